//! The HTTP listener at `[daemon] http`, on hyper's HTTP/1.1 server, over TLS when
//! `tls_cert` and `tls_key` are set: `/metrics`, `/api/status` and `/` (the status
//! page), `/push/NAME` (push watches) and `/api/v1/…` (route.rs says who may ask what).
//!
//! Bounded, so a flood of idle or malformed connections cannot take the daemon's file
//! descriptors or memory: at most `MAX_CONNECTIONS` at once (one more closes the oldest
//! idle one, so a scrape always gets in), a TLS handshake and a request's head within
//! `HEAD_TIME` and `MAX_HEAD` bytes, a connection's whole life within `CONNECTION_TIME`,
//! bodies within their route's cap, requests per token within its rate. The answers
//! come from the daemon's loop, like the control socket's, within `ANSWER_TIME`.

mod access;
mod api;
mod conns;
mod hosts;
mod push;
mod route;
mod text;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::action::outbox::Outbox;
use crate::config::Config;
use crate::control::{Call, Caller, Request as Ask, Response as Answer};
use crate::event::Event;

pub use hosts::Hosts;
pub use text::prometheus_text;

const HEAD_TIME: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 16 * 1024;
const CONNECTION_TIME: Duration = Duration::from_secs(60);
const ANSWER_TIME: Duration = Duration::from_secs(5);

const TEXT: &str = "text/plain; charset=utf-8";

type Reply = Response<Full<Bytes>>;

/// What the listener shares with the daemon: the configuration's tokens and push
/// watches (replaced at a reload), its TLS, and where events and calls go.
pub struct Shared {
    access: RwLock<Arc<access::Access>>,
    host: RwLock<Arc<str>>,
    tls: tls::Tls,
    rates: access::Rates,
    quiet: access::Quiet,
    hosts: Hosts,
    events: mpsc::Sender<Event>,
    calls: mpsc::Sender<Call>,
    outbox: Outbox,
}

impl Shared {
    pub fn new(
        config: &Config,
        addr: SocketAddr,
        events: mpsc::Sender<Event>,
        calls: mpsc::Sender<Call>,
        outbox: Outbox,
    ) -> Shared {
        Shared {
            access: RwLock::new(Arc::new(access::Access::new(config))),
            host: RwLock::new(Arc::from(config.daemon.host.as_str())),
            tls: tls::Tls::new(config.daemon.listener.tls.clone()),
            rates: access::Rates::default(),
            quiet: access::Quiet::default(),
            hosts: Hosts::new(addr, &config.daemon.http_hosts),
            events,
            calls,
            outbox,
        }
    }

    /// A reload: its tokens, users and push watches, and its certificate read again.
    pub fn reconfigure(&self, config: &Config) {
        *self.access.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(access::Access::new(config));
        *self.host.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::from(config.daemon.host.as_str());
        self.tls.reconfigure(config.daemon.listener.tls.clone());
    }

    /// What `hark status` says of the listener: a certificate that did not load.
    pub fn problems(&self) -> Vec<String> {
        self.tls.problems()
    }

    fn access(&self) -> Arc<access::Access> {
        Arc::clone(&self.access.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn host(&self) -> Arc<str> {
        Arc::clone(&self.host.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    tokio::spawn(tls::watch_files(Arc::clone(&shared), stop.clone()));
    let conns = Arc::new(conns::Conns::default());
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
        let Some(conn) = conns.open() else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        tokio::spawn(async move {
            let ended = conn.ended.clone();
            let served = async {
                match shared.tls.acceptor() {
                    None => route::serve_connection(stream, from, None, shared, conn).await,
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(HEAD_TIME, acceptor.accept(stream));
                        let tls = match handshake.await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                refused("tls_handshake");
                                tracing::debug!(peer = %from, error = %e, "http: TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                refused("tls_handshake");
                                tracing::debug!(peer = %from, "http: TLS handshake stalled; closed");
                                return;
                            }
                        };
                        let cert = tls::client_name(tls.get_ref().1);
                        route::serve_connection(tls, from, cert, shared, conn).await;
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = ended.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_TIME, served) => {}
            }
        });
    }
}

/// One more request or connection refused, in `hark_http_refused_total{reason}`.
fn refused(reason: &str) {
    crate::metrics::get()
        .http_refused
        .get_or_create(&crate::metrics::label("reason", reason))
        .inc();
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

fn retry_after(r: &mut Reply, secs: u64) {
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

fn unavailable(why: &'static str) -> Reply {
    let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n"));
    retry_after(&mut r, 1);
    r
}

/// A request's body, up to `max` bytes; a longer one is answered 413.
async fn limited_body(
    req: hyper::Request<hyper::body::Incoming>,
    max: usize,
) -> Result<Bytes, Box<Reply>> {
    let too_large = || {
        refused("too_large");
        Box::new(reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            TEXT,
            format!("the body is larger than this route takes ({max} bytes)\n"),
        ))
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(Box::new(reply(
            StatusCode::BAD_REQUEST,
            TEXT,
            "the body could not be read\n",
        ))),
    }
}

/// A request of the daemon's loop, as the control socket makes it.
async fn ask(shared: &Shared, request: Ask, who: Caller) -> Result<Answer, &'static str> {
    let (tx, rx) = oneshot::channel();
    let call = Call {
        request,
        who,
        reply: tx,
    };
    let asked = async {
        shared.calls.send(call).await.ok()?;
        rx.await.ok()
    };
    match tokio::time::timeout(ANSWER_TIME, asked).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err("hark is stopping"),
        Err(_) => Err("the daemon did not answer in time; try again"),
    }
}
