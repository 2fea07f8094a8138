//! The outbox: webhook and Alertmanager deliveries that survive target outages, crashes
//! and restarts.
//!
//! A delivery is written to the store (fsync'd, in the same transaction as the rule state
//! change that caused it) before its first attempt, and removed only after a 2xx.
//! Deliveries to one receiver of one rule go in order, one at a time (a resolve never
//! overtakes its firing); everything else goes in parallel. Connection errors, timeouts,
//! 5xx and 429 are retried with exponential backoff and jitter (or after `Retry-After`);
//! other answers are failed deliveries, logged and kept in the store, not retried. Every
//! attempt of one delivery carries the same `Idempotency-Key`.
//!
//! Alertmanager alerts that fire are also kept (in the store, beside the rule state) and
//! posted again every `resend`, each post saying the alert ends after four of those: an
//! Alertmanager that restarted (it keeps alerts in memory) learns them again, and one
//! that stops hearing from this host resolves them by itself. A re-post is not stored and
//! not retried (the next one follows), and is skipped while its receiver's lane still
//! has a delivery of the rule to make.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ActionConfig, ActionKind, Secret};
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
    /// Which of the action's receivers: every member of an Alertmanager cluster gets
    /// every alert.
    #[serde(default)]
    pub target: u32,
    /// For an Alertmanager alert, the alert (`action/rule/watch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

impl Delivery {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An Alertmanager alert that fires, as stored to be posted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub action: String,
    pub rule: String,
    pub watch: String,
    /// The alerts array to post, without `endsAt`.
    pub body: String,
}

/// The key of an Alertmanager alert. Names cannot contain `/`.
pub fn alert_key(action: &str, rule: &str, watch: &str) -> String {
    format!("{action}/{rule}/{watch}")
}

/// A new idempotency key: 128 random bits, in hex.
pub fn new_key() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The changes to the stored firing alerts that deliveries make: a firing alert is kept
/// (to be posted again), a resolved one removed. The caller commits them with the
/// deliveries.
pub fn alert_changes(deliveries: &[(u64, Delivery)]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for (_, d) in deliveries {
        let Some(key) = &d.alert else { continue };
        if d.target != 0 {
            continue;
        }
        let value = (d.state == "firing").then(|| {
            let watch = key.rsplit('/').next().unwrap_or_default().to_string();
            serde_json::to_vec(&ActiveAlert {
                action: d.action.clone(),
                rule: d.rule.clone(),
                watch,
                body: d.body.clone(),
            })
            .unwrap_or_default()
        });
        out.retain(|(k, _)| k != key);
        out.push((key.clone(), value));
    }
    out
}

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// At most this much of a receiver's answer is read (and none of it kept).
const ANSWER_READ_MAX: usize = 64 * 1024;
/// A `Retry-After` longer than this is taken as this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// Hands deliveries to the lane of their rule and receiver.
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    /// Replaced by a reload: each attempt reads the action as configured then.
    actions: std::sync::RwLock<HashMap<String, Arc<ActionConfig>>>,
    /// Stops the re-posting tasks of the current configuration.
    resending: Mutex<CancellationToken>,
    /// Built at the first delivery: loading the TLS roots costs memory a daemon without
    /// webhooks should not pay.
    client: std::sync::OnceLock<Client>,
    store: Arc<Store>,
    stop: CancellationToken,
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    /// Alertmanager alerts firing now, by `action/rule/watch`.
    active: Mutex<HashMap<String, ActiveAlert>>,
}

/// Rule, action, receiver.
type LaneKey = (String, String, u32);

struct Lane {
    tx: mpsc::UnboundedSender<Job>,
    state: Arc<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Jobs sent and not yet finished.
    queued: AtomicUsize,
    /// Waiting to retry: its receiver failed.
    backing_off: std::sync::atomic::AtomicBool,
}

impl LaneState {
    /// Nothing to do now: idle, or waiting for a receiver that failed.
    fn settled(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0 || self.backing_off.load(Ordering::Acquire)
    }
}

/// A stored delivery (with its sequence number) or a re-post of a firing alert (none).
struct Job {
    seq: Option<u64>,
    delivery: Delivery,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbox {
    pub fn new(
        actions: HashMap<String, Arc<ActionConfig>>,
        store: Arc<Store>,
        stop: CancellationToken,
    ) -> Outbox {
        Outbox {
            shared: Arc::new(Shared {
                resending: Mutex::new(stop.child_token()),
                actions: std::sync::RwLock::new(actions),
                client: std::sync::OnceLock::new(),
                store,
                stop,
                lanes: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes back the firing alerts a previous run stored, those whose rule still fires
    /// (`firing` holds `rule/watch` keys) with the same Alertmanager action; returns the
    /// keys of the others, for the caller to remove. Alertmanager resolves those by itself
    /// when their last `endsAt` passes.
    pub fn restore_alerts(
        &self,
        stored: Vec<(String, Vec<u8>)>,
        firing: &HashSet<String>,
    ) -> Vec<String> {
        let mut stale = Vec::new();
        let mut active = lock(&self.shared.active);
        for (key, bytes) in stored {
            let alert = serde_json::from_slice::<ActiveAlert>(&bytes)
                .ok()
                .filter(|a| {
                    firing.contains(&crate::store::key(&a.rule, &a.watch))
                        && self.shared.is_alertmanager(&a.action)
                });
            match alert {
                Some(a) => {
                    active.insert(key, a);
                }
                None => stale.push(key),
            }
        }
        stale
    }

    /// Queues a stored delivery behind the earlier ones of its rule and receiver.
    pub fn enqueue(&self, seq: u64, d: Delivery) {
        if let Some(key) = &d.alert {
            let mut active = lock(&self.shared.active);
            if d.state == "firing" {
                let watch = key.rsplit('/').next().unwrap_or_default().to_string();
                active.insert(
                    key.clone(),
                    ActiveAlert {
                        action: d.action.clone(),
                        rule: d.rule.clone(),
                        watch,
                        body: d.body.clone(),
                    },
                );
            } else {
                active.remove(key);
            }
        }
        self.shared.send(
            Job {
                seq: Some(seq),
                delivery: d,
            },
            false,
        );
    }

    /// At a stop: waits, at most `grace`, for the deliveries being made and queued to be
    /// made, except those waiting to retry a receiver that failed. What is left stays in
    /// the store for the next start.
    pub async fn drain(&self, grace: Duration) {
        let settled = || lock(&self.shared.lanes).values().all(|l| l.state.settled());
        let deadline = tokio::time::Instant::now() + grace;
        while !settled() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left: usize = lock(&self.shared.lanes)
            .values()
            .map(|l| l.state.queued.load(Ordering::Acquire))
            .sum();
        if left > 0 {
            tracing::info!(
                count = left,
                "deliveries not made yet stay in the outbox for the next start"
            );
        }
    }

    /// Posts every firing alert now (those restored at start), then again every `resend`
    /// of its action.
    pub fn start_resending(&self) {
        self.shared.resend(None);
        self.spawn_resenders();
    }

    fn spawn_resenders(&self) {
        let stop = {
            let mut slot = lock(&self.shared.resending);
            slot.cancel();
            *slot = self.shared.stop.child_token();
            slot.clone()
        };
        let actions = self
            .shared
            .actions
            .read()
            .unwrap_or_else(|p| p.into_inner());
        for (name, action) in actions.iter() {
            if let ActionKind::Alertmanager(am) = &action.kind {
                tokio::spawn(resender(
                    Arc::clone(&self.shared),
                    name.clone(),
                    am.resend,
                    stop.clone(),
                ));
            }
        }
    }

    /// Takes a reloaded configuration's actions: pending deliveries and retries use them
    /// from their next attempt. Returns the keys of firing alerts whose action is gone or
    /// no longer an alertmanager action, no longer posted, for the caller to remove.
    pub fn reconfigure(&self, actions: HashMap<String, Arc<ActionConfig>>) -> Vec<String> {
        *self
            .shared
            .actions
            .write()
            .unwrap_or_else(|p| p.into_inner()) = actions;
        let mut stale = Vec::new();
        lock(&self.shared.active).retain(|key, a| {
            let keep = self.shared.is_alertmanager(&a.action);
            if !keep {
                stale.push(key.clone());
            }
            keep
        });
        self.spawn_resenders();
        stale
    }

    /// Deliveries waiting in lanes and being made now.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.lanes)
            .values()
            .map(|l| l.state.queued.load(Ordering::Acquire))
            .sum()
    }
}

impl Shared {
    fn action(&self, name: &str) -> Option<Arc<ActionConfig>> {
        self.actions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn is_alertmanager(&self, name: &str) -> bool {
        self.action(name)
            .is_some_and(|a| matches!(a.kind, ActionKind::Alertmanager(_)))
    }

    /// Sends a job to its lane, starting the lane if needed; with `only_if_idle`, only
    /// when the lane has nothing to do. Whether it was sent.
    fn send(self: &Arc<Self>, job: Job, only_if_idle: bool) -> bool {
        let d = &job.delivery;
        let key = (d.rule.clone(), d.action.clone(), d.target);
        let mut lanes = lock(&self.lanes);
        let lane = lanes.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let state = Arc::new(LaneState::default());
            tokio::spawn(lane(Arc::clone(self), rx, Arc::clone(&state)));
            Lane { tx, state }
        });
        if only_if_idle && lane.state.queued.load(Ordering::Acquire) > 0 {
            return false;
        }
        lane.state.queued.fetch_add(1, Ordering::AcqRel);
        if lane.tx.send(job).is_err() {
            lane.state.queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Posts the firing alerts (of one action, or all) again, to every receiver whose
    /// lane is idle.
    fn resend(self: &Arc<Self>, only: Option<&str>) {
        let alerts: Vec<ActiveAlert> = lock(&self.active)
            .values()
            .filter(|a| only.is_none_or(|o| a.action == o))
            .cloned()
            .collect();
        for a in alerts {
            let action = self.action(&a.action);
            let Some(ActionKind::Alertmanager(am)) = action.as_deref().map(|c| &c.kind) else {
                continue;
            };
            for target in 0..am.endpoints.len() as u32 {
                let delivery = Delivery {
                    key: new_key(),
                    rule: a.rule.clone(),
                    action: a.action.clone(),
                    state: "firing".into(),
                    body: a.body.clone(),
                    content_type: "application/json".into(),
                    accepted: SystemTime::now(),
                    attempts: 0,
                    failed: None,
                    target,
                    alert: Some(alert_key(&a.action, &a.rule, &a.watch)),
                };
                self.send(
                    Job {
                        seq: None,
                        delivery,
                    },
                    true,
                );
            }
        }
    }
}

async fn resender(shared: Arc<Shared>, action: String, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => shared.resend(Some(&action)),
        }
    }
}

async fn lane(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>, state: Arc<LaneState>) {
    loop {
        let next = tokio::select! {
            _ = shared.stop.cancelled() => return,
            n = rx.recv() => n,
        };
        let Some(job) = next else { return };
        match job.seq {
            Some(seq) => deliver(&shared, &state, seq, job.delivery).await,
            None => repost(&shared, job.delivery).await,
        }
        state.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Outcome {
    Delivered,
    Retry(Option<Duration>, String),
    Failed(String),
}

/// Where and how one action's deliveries to one receiver are sent.
struct Receiver<'a> {
    url: &'a Secret,
    method: Method,
    headers: &'a [(HeaderName, Secret)],
    timeout: Duration,
    retry: Option<u32>,
    /// For Alertmanager: firing alerts end after this unless posted again.
    ends_after: Option<Duration>,
}

fn receiver(action: Option<&ActionConfig>, target: u32) -> Option<Receiver<'_>> {
    match &action?.kind {
        ActionKind::Webhook(w) => (target == 0).then_some(Receiver {
            url: &w.url,
            method: w.method.clone(),
            headers: &w.headers,
            timeout: w.timeout,
            retry: w.retry,
            ends_after: None,
        }),
        ActionKind::Alertmanager(am) => Some(Receiver {
            url: am.endpoints.get(target as usize)?,
            method: Method::POST,
            headers: &am.headers,
            timeout: am.timeout,
            retry: am.retry,
            ends_after: Some(am.lifetime()),
        }),
        ActionKind::Shell(_) => None,
    }
}

impl Shared {
    fn client(&self) -> &Client {
        self.client.get_or_init(|| {
            Client::builder()
                .user_agent(concat!("hark/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .build()
                .unwrap_or_default()
        })
    }
}

async fn deliver(shared: &Shared, lane: &LaneState, seq: u64, mut d: Delivery) {
    loop {
        let action = shared.action(&d.action);
        let Some(to) = receiver(action.as_deref(), d.target) else {
            give_up(
                shared,
                seq,
                d,
                "its action, or this receiver of it, is no longer in the configuration".into(),
            )
            .await;
            return;
        };
        d.attempts += 1;
        let outcome = attempt(shared.client(), &to, &d).await;
        match outcome {
            Outcome::Delivered => {
                crate::metrics::get().delivery(&d.action, "delivered");
                tracing::info!(rule = %d.rule, action = %d.action, state = %d.state, attempts = d.attempts, "delivered");
                settle(shared, vec![(seq, None)]).await;
                return;
            }
            Outcome::Failed(why) => {
                give_up(shared, seq, d, why).await;
                return;
            }
            Outcome::Retry(after, why) => {
                crate::metrics::get().delivery(&d.action, "retry");
                if to.retry.is_some_and(|max| d.attempts >= max) {
                    let why = format!("{why}; no attempts left (retry = {})", d.attempts);
                    give_up(shared, seq, d, why).await;
                    return;
                }
                let wait = after.unwrap_or_else(|| backoff(d.attempts));
                tracing::warn!(rule = %d.rule, action = %d.action, attempts = d.attempts, error = %why, "delivery failed; retrying in {}", crate::event::human_duration(wait));
                lane.backing_off.store(true, Ordering::Release);
                tokio::select! {
                    _ = shared.stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                lane.backing_off.store(false, Ordering::Release);
            }
        }
    }
}

/// One attempt to post a firing alert again; a failure waits for the next re-post.
async fn repost(shared: &Shared, d: Delivery) {
    let action = shared.action(&d.action);
    let Some(to) = receiver(action.as_deref(), d.target) else {
        return;
    };
    match attempt(shared.client(), &to, &d).await {
        Outcome::Delivered => {
            crate::metrics::get().delivery(&d.action, "reposted");
            tracing::debug!(rule = %d.rule, action = %d.action, target = d.target, "firing alert posted again")
        }
        Outcome::Retry(_, why) | Outcome::Failed(why) => {
            crate::metrics::get().delivery(&d.action, "repost_failed");
            tracing::warn!(rule = %d.rule, action = %d.action, target = d.target, error = %why, "posting a firing alert again failed; the next re-post follows")
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

async fn attempt(client: &Client, to: &Receiver<'_>, d: &Delivery) -> Outcome {
    let body = match to.ends_after {
        Some(after) if d.state == "firing" => {
            super::payload::with_ends_at(&d.body, SystemTime::now() + after)
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
            classify(status, retry_after)
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
    crate::metrics::get().delivery(&d.action, "failed");
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

    fn delivery(state: &str, target: u32, alert: Option<&str>) -> Delivery {
        Delivery {
            key: new_key(),
            rule: "r".into(),
            action: "am".into(),
            state: state.into(),
            body: "[{}]".into(),
            content_type: "application/json".into(),
            accepted: SystemTime::now(),
            attempts: 0,
            failed: None,
            target,
            alert: alert.map(str::to_string),
        }
    }

    #[test]
    fn firing_alerts_are_kept_once_and_a_resolve_removes_them() {
        let key = alert_key("am", "r", "w");
        let firing = vec![
            (1, delivery("firing", 0, Some(&key))),
            (2, delivery("firing", 1, Some(&key))),
            (3, delivery("firing", 0, None)),
        ];
        let changes = alert_changes(&firing);
        assert_eq!(changes.len(), 1, "one per alert, not per receiver");
        let kept: ActiveAlert = serde_json::from_slice(changes[0].1.as_ref().unwrap()).unwrap();
        assert_eq!((kept.rule.as_str(), kept.watch.as_str()), ("r", "w"));
        let mut both = firing;
        both.push((4, delivery("resolved", 0, Some(&key))));
        assert_eq!(alert_changes(&both), vec![(key, None)], "the last one wins");
    }

    #[test]
    fn ends_at_is_set_only_where_it_is_missing() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
        let body = r#"[{"labels":{"a":"b"}},{"endsAt":"2026-01-01T00:00:00Z"}]"#;
        let v: serde_json::Value =
            serde_json::from_str(&super::super::payload::with_ends_at(body, t).unwrap()).unwrap();
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:01:00.000Z");
        assert_eq!(v[1]["endsAt"], "2026-01-01T00:00:00Z");
        assert_eq!(super::super::payload::with_ends_at("not json", t), None);
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
