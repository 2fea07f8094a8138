//! Each request: its `Host` checked, who sent it and whether they may, then its answer.
//!
//! | path | needs |
//! |---|---|
//! | `/metrics` | open (`anonymous`, default on loopback), or `read`, a user, a client certificate |
//! | `/`, `/api/status` | the same, as `page` |
//! | `/api/v1/…` reads | `read`, a user or a client certificate |
//! | `/api/v1/…` writes | `write` |
//! | `/push/NAME` | the watch's `token`, or a token with `push` |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::access::{Need, Refused, Who};
use super::conns::Conn;
use super::{api, ask, json_reply, push, refused, reply, unavailable, Reply, Shared, TEXT};
use crate::config::Open;
use crate::control::{Caller, Request as Ask};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest body of an API request.
const API_BODY: usize = 64 * 1024;

/// Serves one connection's requests.
pub(super) async fn serve_connection<IO>(
    io: IO,
    from: SocketAddr,
    cert: Option<String>,
    shared: Arc<Shared>,
    conn: Conn,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let cert: Option<Arc<str>> = cert.map(Arc::from);
    let served = Arc::clone(&conn);
    let service = hyper::service::service_fn(move |req| {
        let (shared, conn, cert) = (Arc::clone(&shared), Arc::clone(&served), cert.clone());
        async move {
            conn.begin();
            let r = answer(req, from, cert.as_deref(), &shared).await;
            conn.end();
            Ok::<_, Infallible>(r)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(super::HEAD_TIME)
        .max_buf_size(super::MAX_HEAD);
    let _ = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
    drop(conn);
}

async fn answer(
    req: Request<Incoming>,
    from: SocketAddr,
    cert: Option<&str>,
    shared: &Shared,
) -> Reply {
    let host = req.headers().get(hyper::header::HOST);
    if !shared
        .hosts
        .admits(host.map(|h| h.to_str().unwrap_or("\u{0}")))
    {
        tracing::debug!(peer = %from, "http: a Host this listener does not answer to");
        return reply(
            StatusCode::MISDIRECTED_REQUEST,
            TEXT,
            "this listener answers to loopback names and `http_hosts` only\n",
        );
    }
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let token = query
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone());
    let access = shared.access();
    let reads_only = |m: &Method| *m == Method::GET || *m == Method::HEAD;
    let asked = Asked {
        from,
        token: token.as_deref(),
        cert,
        shared,
        access: &access,
    };
    if let Some(rest) = path.strip_prefix("/push/") {
        return push_request(req, rest, query, asked).await;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return api_request(req, rest, asked).await;
    }
    let need = match path.as_str() {
        "/metrics" => Open::Metrics,
        "/" | "/api/status" => Open::Page,
        _ => return not_found(from, &path),
    };
    let who = match asked.check(req.headers(), Need::Open(need)).await {
        Ok(w) => w,
        Err(e) => return refusal(shared, &access, e, from),
    };
    if let Err(r) = within_rate(shared, &who) {
        return *r;
    }
    if !reads_only(req.method()) {
        return not_allowed("GET, HEAD");
    }
    if need == Open::Metrics {
        return metrics(&req, shared).await;
    }
    let caller = Caller::Http {
        name: who.name(),
        from,
    };
    let status = match ask(shared, Ask::Status, caller).await {
        Ok(a) => a.status,
        Err(e) => return unavailable(e),
    };
    let Some(s) = status else {
        return unavailable("hark is stopping");
    };
    match path.as_str() {
        "/api/status" => json_reply(StatusCode::OK, &serde_json::json!(s)),
        _ => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::super::page::render(&s, &crate::metrics::get().timings.last_hour()),
        ),
    }
}

/// Where a request comes from and what it is checked against.
struct Asked<'a> {
    from: SocketAddr,
    /// `?token=`.
    token: Option<&'a str>,
    /// The verified client certificate's name.
    cert: Option<&'a str>,
    shared: &'a Shared,
    access: &'a Arc<super::access::Access>,
}

impl Asked<'_> {
    async fn check(&self, headers: &hyper::HeaderMap, need: Need<'_>) -> Result<Who, Refused> {
        self.access
            .check(headers, self.token, self.cert, need)
            .await
    }
}

/// `/push/NAME…`: the watch's token, then the event queued.
async fn push_request(
    req: Request<Incoming>,
    rest: &str,
    query: Vec<(String, String)>,
    a: Asked<'_>,
) -> Reply {
    let Some((name, kind)) = push::parse_path(rest) else {
        return not_found(a.from, rest);
    };
    let who = match a.check(req.headers(), Need::Push(name)).await {
        Ok(w) => w,
        Err(e) => return refusal(a.shared, a.access, e, a.from),
    };
    if let Err(r) = within_rate(a.shared, &who) {
        return *r;
    }
    if req.method() != Method::GET && req.method() != Method::POST {
        return not_allowed("GET, POST");
    }
    let Some(kind) = kind else {
        let text = "after /push/NAME: nothing, /start, /fail or an exit code 0-255\n";
        return reply(StatusCode::BAD_REQUEST, TEXT, text);
    };
    let max = a.access.pushes.get(name).copied().unwrap_or(0);
    let (name, method) = (name.to_string(), req.method().to_string());
    let body = match super::limited_body(req, max).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let request = push::Pushed {
        watch: &name,
        kind: &kind,
        query,
        body: &body,
        method: &method,
        from: a.from,
        token: &who.name(),
    };
    let event = push::event(a.shared, request);
    push::queue(a.shared, event)
}

/// `/api/v1/…`: the scope, then the daemon's answer.
async fn api_request(req: Request<Incoming>, rest: &str, a: Asked<'_>) -> Reply {
    let route = match api::route(req.method(), rest) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let need = if route.writes() {
        Need::Write
    } else {
        Need::Read
    };
    let who = match a.check(req.headers(), need).await {
        Ok(w) => w,
        Err(e) => return refusal(a.shared, a.access, e, a.from),
    };
    if let Err(r) = within_rate(a.shared, &who) {
        return *r;
    }
    let body = match super::limited_body(req, API_BODY).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let request = match api::request(&route, &body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let caller = Caller::Http {
        name: who.name(),
        from: a.from,
    };
    match ask(a.shared, request, caller).await {
        Ok(answer) => api::answer(&route, answer),
        Err(e) => unavailable(e),
    }
}

async fn metrics(req: &Request<Incoming>, shared: &Shared) -> Reply {
    shared.outbox.report_metrics().await;
    let text = crate::metrics::get().render();
    let wants_openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        reply(StatusCode::OK, OPENMETRICS, text)
    } else {
        reply(
            StatusCode::OK,
            PROMETHEUS_TEXT,
            super::prometheus_text(&text),
        )
    }
}

/// A token's request within its rate, or 429 with how long to wait.
fn within_rate(shared: &Shared, who: &Who) -> Result<(), Box<Reply>> {
    let Who::Token { name, rate } = who else {
        return Ok(());
    };
    shared.rates.take(name, *rate).map_err(|wait| {
        refused("rate_limited");
        let mut r = reply(
            StatusCode::TOO_MANY_REQUESTS,
            TEXT,
            format!("more than {rate} requests a second with this token; slow down\n"),
        );
        super::retry_after(&mut r, wait.as_secs_f64().ceil() as u64);
        Box::new(r)
    })
}

/// 401 (saying nothing of what exists) or 403; counted, and logged at most once a
/// minute per address.
fn refusal(
    shared: &Shared,
    access: &super::access::Access,
    why: Refused,
    from: SocketAddr,
) -> Reply {
    match why {
        Refused::Unauthorized => {
            refused("unauthorized");
            if shared.quiet.speak(from) {
                tracing::warn!(peer = %from, "http: a request without valid credentials refused (401); said once a minute per address");
            }
            let mut r = reply(StatusCode::UNAUTHORIZED, TEXT, "unauthorized\n");
            let ask_for = match access.has_users() {
                true => "Bearer, Basic realm=\"hark\"",
                false => "Bearer",
            };
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(ask_for));
            r
        }
        Refused::Forbidden(what) => {
            refused("forbidden");
            reply(StatusCode::FORBIDDEN, TEXT, format!("{what}\n"))
        }
    }
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut r = reply(
        StatusCode::METHOD_NOT_ALLOWED,
        TEXT,
        format!("only {allow} here\n"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn not_found(from: SocketAddr, path: &str) -> Reply {
    tracing::debug!(peer = %from, path, "http: not found");
    reply(
        StatusCode::NOT_FOUND,
        TEXT,
        "not found: / (the status page), /api/status, /metrics, /api/v1/, /push/NAME\n",
    )
}
