//! The HTTP listener at `[daemon] http`, on hyper's HTTP/1.1 server: `/metrics`
//! (OpenMetrics or Prometheus' text format, as the scraper's `Accept` asks), `/api/status`
//! (`hark status --json`), and `/`, the status page.
//!
//! Bounded, so a flood of idle or malformed connections cannot take the daemon's file
//! descriptors or memory: at most `MAX_CONNECTIONS` at once (more are closed at once), a
//! request's head within `HEAD_TIME` and `MAX_HEAD` bytes (hyper answers 431 or closes),
//! a connection's whole life within `CONNECTION_TIME`. The answers come from the daemon's
//! loop, like the control socket's, within `ANSWER_TIME`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::action::outbox::Outbox;
use crate::control::{Call, Peer, Request as Ask, Status};

const MAX_CONNECTIONS: usize = 256;
const HEAD_TIME: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 16 * 1024;
const CONNECTION_TIME: Duration = Duration::from_secs(60);
const ANSWER_TIME: Duration = Duration::from_secs(5);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which `Host` a request may name. On a loopback address only loopback names and
/// addresses (and `http_hosts`): a page elsewhere that a browser was sent to could
/// otherwise read the status (its last log lines) through DNS rebinding, its own name
/// resolving to 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Hosts {
    loopback: bool,
    allowed: Arc<[String]>,
}

impl Hosts {
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Hosts {
        Hosts {
            loopback: listen.ip().is_loopback(),
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request with this `Host` header (absent: HTTP/1.0) is answered.
    pub fn admits(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        if !self.loopback {
            return true;
        }
        let host = host.trim().to_ascii_lowercase();
        // `name:port`, `[v6]:port`, `[v6]`, `name`.
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host.as_str(), |(n, _)| n),
        };
        let name = name.trim_end_matches('.');
        name == "localhost"
            || name.ends_with(".localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.allowed.iter().any(|a| a == name)
    }
}

/// Serves until `stop`.
pub async fn serve(
    listener: TcpListener,
    hosts: Hosts,
    outbox: Outbox,
    calls: mpsc::Sender<Call>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut refused: u64 = 0;
    loop {
        let (stream, from) = tokio::select! {
            _ = stop.cancelled() => return,
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    "http: {MAX_CONNECTIONS} connections open; closing new ones at once"
                );
            }
            continue;
        };
        let (outbox, calls, stop) = (outbox.clone(), calls.clone(), stop.clone());
        let hosts = hosts.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let (outbox, calls) = (outbox.clone(), calls.clone());
                let admitted = hosts.admits(
                    req.headers()
                        .get(hyper::header::HOST)
                        .map(|h| h.to_str().unwrap_or("\u{0}")),
                );
                async move {
                    if !admitted {
                        tracing::debug!(peer = %from, "http: a Host this listener does not answer to");
                        return Ok::<_, Infallible>(reply(
                            StatusCode::MISDIRECTED_REQUEST,
                            "text/plain; charset=utf-8",
                            "this listener answers to loopback names and `http_hosts` only\n",
                        ));
                    }
                    Ok::<_, Infallible>(answer(req, from, &outbox, &calls).await)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIME)
                .max_buf_size(MAX_HEAD);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_TIME, conn) => {}
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

async fn answer(
    req: Request<Incoming>,
    from: SocketAddr,
    outbox: &Outbox,
    calls: &mpsc::Sender<Call>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD here\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            outbox.report_metrics().await;
            let text = crate::metrics::get().render();
            let wants_openmetrics = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            if wants_openmetrics {
                reply(StatusCode::OK, OPENMETRICS, text)
            } else {
                reply(StatusCode::OK, PROMETHEUS_TEXT, prometheus_text(&text))
            }
        }
        "/api/status" => match status(calls).await {
            Ok(s) => reply(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec_pretty(&s).unwrap_or_default(),
            ),
            Err(e) => unavailable(e),
        },
        "/" => match status(calls).await {
            Ok(s) => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                super::page::render(&s, &crate::metrics::get().timings.last_hour()),
            ),
            Err(e) => unavailable(e),
        },
        _ => {
            tracing::debug!(peer = %from, path = req.uri().path(), "http: not found");
            reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found: / (the status page), /api/status, /metrics\n",
            )
        }
    }
}

fn unavailable(why: &'static str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        format!("{why}\n"),
    )
}

/// The daemon's status, asked of its loop as `hark status` asks.
async fn status(calls: &mpsc::Sender<Call>) -> Result<Status, &'static str> {
    let (tx, rx) = oneshot::channel();
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let who = unsafe {
        Peer {
            uid: libc::getuid(),
            gid: libc::getgid(),
            pid: None,
        }
    };
    let call = Call {
        request: Ask::Status,
        who,
        reply: tx,
    };
    let asked = async {
        calls.send(call).await.ok()?;
        rx.await.ok()?.status
    };
    match tokio::time::timeout(ANSWER_TIME, asked).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err("hark is stopping"),
        Err(_) => Err("the daemon did not answer in time; try again"),
    }
}

/// OpenMetrics text as Prometheus' text format 0.0.4 (what a scraper that does not ask
/// for OpenMetrics, and `promtool check metrics`, read): a counter's HELP and TYPE name
/// its `_total` samples, and `# UNIT`, `# EOF` and `_created` samples are left out.
pub fn prometheus_text(openmetrics: &str) -> String {
    // Families whose samples carry a suffix their name lacks: counters (`_total`) and
    // info metrics (`_info`).
    let mut suffixed = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.split_once(' ') {
                Some((name, "counter")) => suffixed.insert(name.to_string(), "_total"),
                Some((name, "info")) => suffixed.insert(name.to_string(), "_info"),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let tail = if prefix == "# TYPE " && tail == "info" {
                "gauge"
            } else if prefix == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            };
            let suffix = suffixed.get(name).copied().unwrap_or("");
            out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or_default();
        if sample
            .strip_suffix("_created")
            .is_some_and(|f| suffixed.get(f) == Some(&"_total"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Hosts;

    #[test]
    fn a_loopback_listener_answers_loopback_names_and_its_listed_hosts_only() {
        let h = Hosts::new(
            "127.0.0.1:9797".parse().unwrap(),
            &["Status.Example.org".into()],
        );
        for ok in [
            None,
            Some("127.0.0.1:9797"),
            Some("localhost:9797"),
            Some("LOCALHOST"),
            Some("[::1]:9797"),
            Some("127.1.2.3"),
            Some("status.example.org:443"),
            Some("app.localhost"),
        ] {
            assert!(h.admits(ok), "{ok:?}");
        }
        for bad in [
            Some("evil.example:9797"),
            Some("127.0.0.1.evil.example"),
            Some("localhost.evil.example"),
            Some("10.0.0.1"),
            Some(""),
            Some("\u{0}"),
        ] {
            assert!(!h.admits(bad), "{bad:?}");
        }
        // A listener on another address is reached by whatever name its network gives it.
        let public = Hosts::new("0.0.0.0:9797".parse().unwrap(), &[]);
        assert!(public.admits(Some("evil.example")));
    }

    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_only_lines_go() {
        let om = "# HELP hark_events Events emitted.\n# TYPE hark_events counter\n\
                  hark_events_total{watch=\"a\"} 3\nhark_events_created{watch=\"a\"} 1.7e9\n\
                  # HELP hark_lag_seconds Lag.\n# TYPE hark_lag_seconds histogram\n# UNIT hark_lag_seconds seconds\n\
                  hark_lag_seconds_sum 1.0\n# TYPE hark_build info\nhark_build_info 1\n# EOF\n";
        let text = prometheus_text(om);
        assert_eq!(
            text,
            "# HELP hark_events_total Events emitted.\n# TYPE hark_events_total counter\n\
             hark_events_total{watch=\"a\"} 3\n\
             # HELP hark_lag_seconds Lag.\n# TYPE hark_lag_seconds histogram\n\
             hark_lag_seconds_sum 1.0\n# TYPE hark_build_info gauge\nhark_build_info 1\n"
        );
    }
}
