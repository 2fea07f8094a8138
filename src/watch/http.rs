//! `http` watches: one task per watch on the async runtime, checking on its own interval.
//!
//! Checks run in the periodic loop (`periodic.rs`): never overlapping, a slow target
//! delaying only its own watch. All watches with the same TLS and redirect settings share
//! one `reqwest::Client`, hence one connection pool.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use reqwest::redirect::Policy;
use reqwest::Client;
use serde_json::{Map, Value};

use super::periodic::{self, millis, PeriodicHandle};
use super::WatchError;
use crate::config::{HttpWatch, WatchConfig, WatchKind};

/// The clients every http watch shares, one per (tls_verify, follow_redirects).
#[derive(Default)]
pub struct Clients {
    clients: HashMap<(bool, u32), Client>,
}

impl Clients {
    /// Builds the clients the given watches need.
    pub fn for_watches<'a>(
        watches: impl IntoIterator<Item = &'a WatchConfig>,
    ) -> Result<Clients, WatchError> {
        let mut c = Clients::default();
        for w in watches {
            if let WatchKind::Http(h) = &w.kind {
                let key = (h.tls_verify, h.follow_redirects);
                if let std::collections::hash_map::Entry::Vacant(e) = c.clients.entry(key) {
                    e.insert(build_client(key.0, key.1)?);
                }
            }
        }
        Ok(c)
    }

    pub fn get(&self, h: &HttpWatch) -> Result<Client, WatchError> {
        match self.clients.get(&(h.tls_verify, h.follow_redirects)) {
            Some(c) => Ok(c.clone()),
            None => build_client(h.tls_verify, h.follow_redirects),
        }
    }
}

fn build_client(tls_verify: bool, redirects: u32) -> Result<Client, WatchError> {
    Client::builder()
        .user_agent(concat!("hark/", env!("CARGO_PKG_VERSION")))
        .redirect(if redirects == 0 {
            Policy::none()
        } else {
            Policy::limited(redirects as usize)
        })
        .danger_accept_invalid_certs(!tls_verify)
        .tls_info(true)
        // A health check goes to its target, not through whatever proxy the environment
        // names: a proxy that is down would make every check report the target down.
        .no_proxy()
        .build()
        .map_err(|e| WatchError::Other(format!("cannot set up the HTTP client: {e}")))
}

/// Starts the watch's task on the current runtime.
pub fn start(
    to: super::Emitter,
    config: HttpWatch,
    client: Client,
    clock: super::clock::Clock,
) -> PeriodicHandle {
    let every = config.every;
    periodic::spawn_checks(
        to,
        periodic::Schedule { every, clock },
        (client, config),
        |c, _| async move { check(&c.0, &c.1).await },
    )
}

/// Runs one check and returns the event's fields. Never fails: a failure is a field.
pub async fn check(client: &Client, config: &HttpWatch) -> Map<String, Value> {
    let started = Instant::now();
    let mut status = 0u16;
    let result = tokio::time::timeout(config.timeout, fetch(client, config, &mut status)).await;
    let latency = started.elapsed();
    let mut f = Map::new();
    f.insert("url".into(), Value::from(config.url.as_str()));
    f.insert("method".into(), Value::from(config.method.as_str()));
    match result {
        Ok(Ok(got)) => {
            f.insert("ok".into(), Value::Bool(true));
            f.insert("error".into(), Value::from(""));
            got.into_fields(config, &mut f);
        }
        Ok(Err(e)) => {
            f.insert("ok".into(), Value::Bool(false));
            f.insert("error".into(), Value::from(describe(&e)));
        }
        Err(_) => {
            f.insert("ok".into(), Value::Bool(false));
            let during = if status == 0 { "" } else { " reading the body" };
            f.insert(
                "error".into(),
                Value::from(format!(
                    "timed out{during} after {}",
                    humantime::format_duration(config.timeout)
                )),
            );
        }
    }
    f.entry("status").or_insert(Value::from(status));
    f.insert("latency_ms".into(), Value::from(millis(latency)));
    f
}

struct Fetched {
    status: u16,
    headers: Map<String, Value>,
    body: Vec<u8>,
    truncated: bool,
    certificate: Option<Vec<u8>>,
}

/// Sends the request and reads at most `max_body` bytes of the answer. `status` is set as
/// soon as the headers are in, so a timeout while reading the body still reports it.
async fn fetch(
    client: &Client,
    config: &HttpWatch,
    status: &mut u16,
) -> Result<Fetched, reqwest::Error> {
    let mut request = client.request(config.method.clone(), config.url.clone());
    for (k, v) in &config.headers {
        request = request.header(k, v);
    }
    if let Some(b) = &config.body {
        request = request.body(b.clone());
    }
    let mut response = request.send().await?;
    *status = response.status().as_u16();
    let mut headers = Map::new();
    for (k, v) in response.headers() {
        let v = String::from_utf8_lossy(v.as_bytes());
        match headers.get_mut(k.as_str()) {
            Some(Value::String(s)) => {
                s.push_str(", ");
                s.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_string(), Value::from(v.into_owned()));
            }
        }
    }
    let certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .map(<[u8]>::to_vec);
    let max = usize::try_from(config.max_body).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await? {
        let room = max - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            // The rest is not downloaded: dropping the response closes the connection.
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        status: *status,
        headers,
        body,
        truncated,
        certificate,
    })
}

impl Fetched {
    fn into_fields(self, config: &HttpWatch, f: &mut Map<String, Value>) {
        f.insert("status".into(), Value::from(self.status));
        body_fields(&self.body, self.truncated, f);
        f.insert("headers".into(), Value::Object(self.headers));
        if config.url.scheme() == "https" {
            if let Some(days) = self.certificate.as_deref().and_then(cert_expiry_days) {
                f.insert("cert_expiry_days".into(), Value::from(days));
            }
        }
    }
}

/// `body` (lossy UTF-8), `body_truncated`, and `json` when the whole body is a JSON
/// object or array. Whatever the bytes, this yields fields, never an error.
pub fn body_fields(body: &[u8], truncated: bool, f: &mut Map<String, Value>) {
    let looks_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if looks_json && !truncated {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            f.insert("json".into(), v);
        }
    }
    f.insert(
        "body".into(),
        Value::from(String::from_utf8_lossy(body).into_owned()),
    );
    f.insert("body_truncated".into(), Value::Bool(truncated));
}

/// Days until the certificate's `notAfter`, negative once it has passed.
pub fn cert_expiry_days(der: &[u8]) -> Option<f64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let days = (not_after as f64 - now) / 86_400.0;
    Some((days * 1000.0).round() / 1000.0)
}

/// A transport error as one line, without the URL (the event has it): what kind of step
/// failed, and the innermost cause, which is the part that says why.
fn describe(e: &reqwest::Error) -> String {
    let step = if e.is_connect() {
        "connect"
    } else if e.is_redirect() {
        "redirect"
    } else if e.is_body() || e.is_decode() {
        "reading the body"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request"
    };
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        innermost = Some(s);
        next = s.source();
    }
    match innermost {
        Some(cause) => format!("{step}: {cause}"),
        None => format!("{step}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(cert_expiry_days(b"not a certificate"), None);
        assert_eq!(cert_expiry_days(&[]), None);
    }
}
