//! The outbox: webhook deliveries that survive target outages, crashes and restarts.
//!
//! A delivery is written to the store (fsync'd, in the same transaction as the rule state
//! change that caused it) before its first attempt, and removed only after a 2xx.
//! Deliveries of one rule go in order, one at a time (a resolve never overtakes its
//! firing); different rules' deliveries go in parallel. Connection errors, timeouts, 5xx
//! and 429 are retried with exponential backoff and jitter (or after `Retry-After`);
//! other answers are failed deliveries, logged and kept in the store, not retried. Every
//! attempt of one delivery carries the same `Idempotency-Key`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ActionConfig, ActionKind, WebhookAction};
use crate::store::Store;

/// One accepted delivery, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `Idempotency-Key` of every attempt.
    pub key: String,
    pub rule: String,
    pub action: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub body: String,
    pub content_type: String,
    pub accepted: SystemTime,
    pub attempts: u32,
    /// Why it was given up, for a failed delivery kept visible.
    pub failed: Option<String>,
}

impl Delivery {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A new idempotency key: 128 random bits, in hex.
pub fn new_key() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A `Retry-After` longer than this is taken as this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// Hands deliveries to per-rule lanes.
pub struct Outbox {
    lanes: HashMap<String, mpsc::UnboundedSender<(u64, Delivery)>>,
    shared: Arc<Shared>,
}

struct Shared {
    actions: HashMap<String, Arc<ActionConfig>>,
    /// Built at the first delivery: loading the TLS roots costs memory a daemon without
    /// webhooks should not pay.
    client: std::sync::OnceLock<Client>,
    store: Arc<Store>,
    stop: CancellationToken,
}

impl Outbox {
    pub fn new(
        actions: HashMap<String, Arc<ActionConfig>>,
        store: Arc<Store>,
        stop: CancellationToken,
    ) -> Outbox {
        Outbox {
            lanes: HashMap::new(),
            shared: Arc::new(Shared {
                actions,
                client: std::sync::OnceLock::new(),
                store,
                stop,
            }),
        }
    }

    /// Queues a stored delivery behind the earlier ones of its rule.
    pub fn enqueue(&mut self, seq: u64, d: Delivery) {
        let lane = self.lanes.entry(d.rule.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(lane(Arc::clone(&self.shared), rx));
            tx
        });
        let _ = lane.send((seq, d));
    }
}

async fn lane(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<(u64, Delivery)>) {
    loop {
        let next = tokio::select! {
            _ = shared.stop.cancelled() => return,
            n = rx.recv() => n,
        };
        let Some((seq, d)) = next else { return };
        deliver(&shared, seq, d).await;
    }
}

enum Outcome {
    Delivered,
    Retry(Option<Duration>, String),
    Failed(String),
}

async fn deliver(shared: &Shared, seq: u64, mut d: Delivery) {
    let webhook = match shared.actions.get(&d.action).map(|a| &a.kind) {
        Some(ActionKind::Webhook(w)) => w.clone(),
        _ => {
            give_up(
                shared,
                seq,
                d,
                "its action is no longer a webhook in the configuration".into(),
            )
            .await;
            return;
        }
    };
    loop {
        d.attempts += 1;
        let client = shared.client.get_or_init(|| {
            Client::builder()
                .user_agent(concat!("hark/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .build()
                .unwrap_or_default()
        });
        let outcome = attempt(client, &webhook, &d).await;
        match outcome {
            Outcome::Delivered => {
                tracing::info!(rule = %d.rule, action = %d.action, state = %d.state, attempts = d.attempts, "delivered");
                settle(shared, vec![(seq, None)]).await;
                return;
            }
            Outcome::Failed(why) => {
                give_up(shared, seq, d, why).await;
                return;
            }
            Outcome::Retry(after, why) => {
                if webhook.retry.is_some_and(|max| d.attempts >= max) {
                    let why = format!("{why}; no attempts left (retry = {})", d.attempts);
                    give_up(shared, seq, d, why).await;
                    return;
                }
                let wait = after.unwrap_or_else(|| backoff(d.attempts));
                tracing::warn!(rule = %d.rule, action = %d.action, attempts = d.attempts, error = %why, "delivery failed; retrying in {}", crate::event::human_duration(wait));
                tokio::select! {
                    _ = shared.stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Exponential from one second, capped at five minutes, with "equal jitter": half of it
/// fixed, half random, so many hosts retrying one receiver spread out.
pub fn backoff(attempts: u32) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_MAX);
    capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
}

async fn attempt(client: &Client, w: &WebhookAction, d: &Delivery) -> Outcome {
    let mut req = client
        .request(w.method.clone(), w.url.expose())
        .timeout(w.timeout)
        .header("Idempotency-Key", &d.key)
        .header(CONTENT_TYPE, &d.content_type)
        .body(d.body.clone());
    for (k, v) in &w.headers {
        req = req.header(k, v.expose());
    }
    match req.send().await {
        // The body is read so the connection can be reused, but not kept.
        Ok(resp) => {
            let status = resp.status();
            let retry_after = retry_after(resp.headers());
            let _ = resp.bytes().await;
            classify(status, retry_after)
        }
        Err(e) if e.is_timeout() => Outcome::Retry(
            None,
            format!(
                "timed out after {}",
                crate::event::human_duration(w.timeout)
            ),
        ),
        Err(e) => Outcome::Retry(None, error_text(&e)),
    }
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

async fn give_up(shared: &Shared, seq: u64, mut d: Delivery, why: String) {
    tracing::error!(rule = %d.rule, action = %d.action, state = %d.state, attempts = d.attempts, error = %why, "delivery failed for good; kept in the outbox");
    d.failed = Some(why);
    settle(shared, vec![(seq, Some(d.to_bytes()))]).await;
}

async fn settle(shared: &Shared, changes: Vec<(u64, Option<Vec<u8>>)>) {
    let store = Arc::clone(&shared.store);
    match tokio::task::spawn_blocking(move || store.settle(&changes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot update the outbox"),
        Err(e) => tracing::error!(error = %e, "updating the outbox panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_five_minutes_with_jitter() {
        for _ in 0..100 {
            let b1 = backoff(1);
            assert!(
                b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1),
                "{b1:?}"
            );
            let b4 = backoff(4);
            assert!(
                b4 >= Duration::from_secs(4) && b4 <= Duration::from_secs(8),
                "{b4:?}"
            );
            let b30 = backoff(30);
            assert!(
                b30 >= Duration::from_secs(150) && b30 <= Duration::from_secs(300),
                "{b30:?}"
            );
        }
    }

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
