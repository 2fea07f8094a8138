//! One attempt of one delivery: an HTTP request to a webhook receiver or an Alertmanager,
//! or a message to an SMTP server, and what its answer means for the delivery.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};

use super::{lock, Delivery, Shared};
use crate::config::{ActionConfig, ActionKind, Secret};

/// At most this much of a receiver's answer is read (and none of it kept).
const ANSWER_READ_MAX: usize = 64 * 1024;
/// A `Retry-After` longer than this is taken as this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

pub(super) enum Outcome {
    Delivered,
    Retry(Option<Duration>, String),
    Failed(String),
}

/// Where and how one action's deliveries to one receiver are sent.
pub(super) struct Receiver<'a> {
    url: &'a Secret,
    method: Method,
    headers: &'a [(HeaderName, Secret)],
    timeout: Duration,
    retry: Option<u32>,
    /// For Alertmanager: firing alerts end after this unless posted again.
    ends_after: Option<Duration>,
    pub(super) tls: &'a crate::config::TlsOptions,
}

/// Where one delivery goes: an HTTP receiver, an SMTP server or a service's API.
pub(super) enum Target<'a> {
    Http(Receiver<'a>),
    Email(&'a crate::config::EmailAction),
    Notify(&'a crate::config::NotifyAction),
}

impl Target<'_> {
    pub(super) fn retry(&self) -> Option<u32> {
        match self {
            Target::Http(r) => r.retry,
            Target::Email(e) => e.retry,
            Target::Notify(n) => n.retry,
        }
    }
}

pub(super) fn target(action: Option<&ActionConfig>, target: u32) -> Option<Target<'_>> {
    match &action?.kind {
        ActionKind::Email(e) => (target == 0).then_some(Target::Email(e)),
        ActionKind::Notify(n) => (target == 0).then_some(Target::Notify(n)),
        _ => receiver(action, target).map(Target::Http),
    }
}

pub(super) fn receiver(action: Option<&ActionConfig>, target: u32) -> Option<Receiver<'_>> {
    match &action?.kind {
        ActionKind::Webhook(w) => (target == 0).then_some(Receiver {
            url: &w.url,
            method: w.method.clone(),
            headers: &w.headers,
            timeout: w.timeout,
            retry: w.retry,
            ends_after: None,
            tls: &w.tls,
        }),
        ActionKind::Alertmanager(am) => Some(Receiver {
            url: am.endpoints.get(target as usize)?,
            method: Method::POST,
            headers: &am.headers,
            timeout: am.timeout,
            retry: am.retry,
            ends_after: Some(am.lifetime()),
            tls: &am.tls,
        }),
        // Broker messages go through `publish::deliver_batch`; emails through `target`.
        ActionKind::Broker(_)
        | ActionKind::Shell(_)
        | ActionKind::Systemd(_)
        | ActionKind::Email(_)
        | ActionKind::Notify(_) => None,
    }
}

impl Shared {
    /// The HTTP client for deliveries with `tls`: the system's roots by default (built at
    /// the first delivery: loading them costs memory a daemon without webhooks should not
    /// pay); one of its own for each other `ca`/`tls_verify` (rustls as the brokers use
    /// it, so a refused certificate is named).
    pub(super) fn client(&self, tls: &crate::config::TlsOptions) -> Client {
        if *tls == crate::config::TlsOptions::default() {
            return self.client.get_or_init(|| build_client(None)).clone();
        }
        let mut others = lock(&self.tls_clients);
        if let Some(c) = others
            .iter()
            .find(|(t, _)| t == tls)
            .map(|(_, c)| c.clone())
        {
            return c;
        }
        let c = build_client(Some(tls));
        others.push((tls.clone(), c.clone()));
        c
    }
}

/// A redirect is not followed: it would send the payload and its secret headers to
/// whatever the Location names, and a 301/302 turns a POST into a GET whose 200 would
/// pass for a delivery. A 3xx is a failed delivery that says where.
fn build_client(tls: Option<&crate::config::TlsOptions>) -> Client {
    let mut b = Client::builder()
        .user_agent(concat!("hark/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(tls) = tls {
        match crate::tls::client_config(tls) {
            Ok(config) => b = b.use_preconfigured_tls((*config).clone()),
            Err(e) => tracing::error!(error = %e, "cannot set up TLS for deliveries"),
        }
    }
    b.build().unwrap_or_default()
}

pub(super) async fn attempt(client: &Client, to: &Receiver<'_>, d: &Delivery) -> Outcome {
    let body = match to.ends_after {
        Some(after) if d.state == "firing" => {
            crate::action::payload::with_ends_at(&d.body, SystemTime::now() + after)
                .unwrap_or_else(|| d.body.clone())
        }
        _ => d.body.clone(),
    };
    let mut req = client
        .request(to.method.clone(), to.url.expose())
        .timeout(to.timeout)
        .header("Idempotency-Key", &d.key)
        .header(CONTENT_TYPE, &d.content_type)
        .body(body);
    for (k, v) in to.headers {
        req = req.header(k, v.expose());
    }
    match req.send().await {
        Ok(mut resp) => {
            let status = resp.status();
            let retry_after = retry_after(resp.headers());
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(|l| l.chars().take(200).collect::<String>());
            // A short answer is read to its end so the connection can be reused; a long
            // one (a receiver answering 100 MB) is cut off and its connection dropped.
            // Nothing of it is kept.
            let mut read = 0usize;
            while read < ANSWER_READ_MAX {
                match resp.chunk().await {
                    Ok(Some(c)) => read += c.len(),
                    _ => break,
                }
            }
            match (classify(status, retry_after), location) {
                (Outcome::Failed(why), Some(to)) if status.is_redirection() => Outcome::Failed(
                    format!("{why}, redirecting to {to:?}: redirects are not followed; set the url to where it points"),
                ),
                (outcome, _) => outcome,
            }
        }
        Err(e) if e.is_timeout() => Outcome::Retry(
            None,
            format!(
                "timed out after {}",
                crate::event::human_duration(to.timeout)
            ),
        ),
        Err(e) => Outcome::Retry(None, error_text(&e)),
    }
}

pub(super) async fn mail(e: &crate::config::EmailAction, d: &Delivery) -> Outcome {
    let mail = crate::action::email::Mail {
        key: &d.key,
        subject: d.subject.as_deref().unwrap_or_default(),
        body: &d.body,
        accepted: d.accepted,
    };
    match crate::action::email::send(e, &mail).await {
        Ok(()) => Outcome::Delivered,
        Err(crate::action::email::Refused::Retry(why)) => Outcome::Retry(None, why),
        Err(crate::action::email::Refused::Failed(why)) => Outcome::Failed(why),
    }
}

/// One attempt at a chat or pager service: its request made now (secrets put in), its
/// answer read for the service's rate-limit hint and, on a refusal, its own words.
pub(super) async fn notify(
    client: &Client,
    a: &crate::config::NotifyAction,
    d: &Delivery,
) -> Outcome {
    use crate::action::notify::request;
    let dedup = d.route.as_deref().unwrap_or_default();
    let r = request::make(a, &d.body, &d.state, &d.key, dedup);
    let mut req = client
        .request(r.method, &r.url)
        .timeout(a.timeout)
        .header(CONTENT_TYPE, "application/json")
        .body(r.body);
    for (k, v) in &r.headers {
        req = req.header(*k, v);
    }
    let service = a.service.name();
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let answer = read_some(resp).await;
            let hint = retry_after(&headers).or_else(|| request::retry_hint(&headers, &answer));
            let why = || {
                format!(
                    "{service} answered {status}: {}",
                    request::error_text(&answer)
                )
            };
            match classify(status, hint) {
                Outcome::Failed(_) => Outcome::Failed(why()),
                Outcome::Retry(after, _) => Outcome::Retry(after, why()),
                delivered => delivered,
            }
        }
        Err(e) if e.is_timeout() => Outcome::Retry(
            None,
            format!(
                "{service}: timed out after {}",
                crate::event::human_duration(a.timeout)
            ),
        ),
        // Without the URL: it may hold a token.
        Err(e) => Outcome::Retry(None, format!("{service}: {}", error_text(&e))),
    }
}

/// Up to `ANSWER_READ_MAX` bytes of an answer, as text.
async fn read_some(mut resp: reqwest::Response) -> String {
    let mut out = Vec::new();
    while out.len() < ANSWER_READ_MAX {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c),
            _ => break,
        }
    }
    out.truncate(ANSWER_READ_MAX);
    String::from_utf8_lossy(&out).into_owned()
}

fn classify(status: StatusCode, retry_after: Option<Duration>) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry(retry_after, format!("the receiver answered {status}"))
    } else {
        Outcome::Failed(format!("the receiver answered {status}"))
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    };
    Some(d.min(RETRY_AFTER_MAX))
}

/// The innermost cause of a transport error, without the URL (it may hold a secret).
fn error_text(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    let step = if e.is_connect() { "connect" } else { "request" };
    if std::ptr::addr_eq(cause, e as &dyn std::error::Error) {
        return format!("{step} failed");
    }
    format!("{step}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_retried_and_what_is_not() {
        assert!(matches!(classify(StatusCode::OK, None), Outcome::Delivered));
        assert!(matches!(
            classify(StatusCode::ACCEPTED, None),
            Outcome::Delivered
        ));
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, None),
            Outcome::Retry(None, _)
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, None),
            Outcome::Retry(None, _)
        ));
        let after = Some(Duration::from_secs(2));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, after),
            Outcome::Retry(Some(_), _)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, None),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
