//! The outbox: webhook and Alertmanager deliveries that survive target outages, crashes
//! and restarts.
//!
//! A delivery is written to the store (fsync'd, in the same transaction as the rule state
//! change that caused it) before its first attempt, and removed only after a 2xx.
//! Deliveries to one receiver of one rule go in order, one at a time (a resolve never
//! overtakes its firing); everything else goes in parallel. Connection errors, timeouts,
//! 5xx and 429 are retried with exponential backoff and jitter (or after `Retry-After`);
//! other answers are failed deliveries, logged and kept in the store, not retried. Every
//! attempt of one delivery carries the same `Idempotency-Key`. Firing Alertmanager
//! alerts are also posted again periodically: see `alerts`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::Client;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ActionConfig, ActionKind};
use crate::event::Firing;
use crate::store::Store;

mod alerts;
mod deliver;
mod lane;
mod manage;
mod publish;
mod resume;
mod send;

pub use deliver::backoff;
use deliver::settle;
use lane::lane;
use send::receiver;

pub use alerts::{alert_changes, alert_key, ActiveAlert};
pub use manage::Entry;

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
    /// The watch of the firing's event, for the trace only (`hark tail --watch`).
    #[serde(default)]
    pub watch: String,
    /// For a broker message: its routing key, topic or subject, rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// For an email: its subject, rendered (the body is `body`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Delivery {
    /// A new delivery of `action` for `firing`, with a new idempotency key, to the
    /// action's first (or only) receiver.
    pub fn new(firing: &Firing, action: &str, body: String, content_type: String) -> Delivery {
        Delivery {
            key: new_key(),
            rule: firing.rule.to_string(),
            action: action.to_string(),
            state: firing.state.as_str().to_string(),
            body,
            content_type,
            accepted: SystemTime::now(),
            attempts: 0,
            failed: None,
            target: 0,
            alert: None,
            watch: firing.event.watch.to_string(),
            route: None,
            subject: None,
        }
    }

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

/// Hands deliveries to the lane of their rule and receiver. A clone is another handle on
/// the same outbox.
#[derive(Clone)]
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
    /// Clients for actions with their own `ca` or `tls_verify`.
    tls_clients: Mutex<Vec<(crate::config::TlsOptions, Client)>>,
    /// Connections to message brokers, shared by the actions that name one.
    brokers: super::broker::Brokers,
    store: Arc<Store>,
    stop: CancellationToken,
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    /// Alertmanager alerts firing now, by `action/rule/watch`.
    active: Mutex<HashMap<String, ActiveAlert>>,
    /// A task is trying to store outbox updates a failed write left.
    settling: Arc<std::sync::atomic::AtomicBool>,
    /// Pending deliveries dropped by `hark outbox drop`: their lanes let them go.
    dropped: Mutex<std::collections::HashSet<u64>>,
    /// Deliveries being tried again: their attempts, last error and next try, which the
    /// store has only once one fails for good; the views show them live.
    retrying: Mutex<HashMap<u64, Retrying>>,
}

/// A delivery being tried again, as `hark outbox` and `hark status` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrying {
    pub attempts: u32,
    pub error: String,
    pub next: SystemTime,
}

impl Shared {
    /// An attempt of `seq` failed and is tried again after `wait`.
    fn note_retry(&self, seq: u64, attempts: u32, error: &str, wait: Duration) {
        lock(&self.retrying).insert(
            seq,
            Retrying {
                attempts,
                error: error.to_string(),
                next: SystemTime::now() + wait,
            },
        );
    }

    /// `seq` is tried again no more (delivered, failed for good, dropped).
    fn retry_done(&self, seq: u64) {
        lock(&self.retrying).remove(&seq);
    }
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
    /// Waits `wait` before the next attempt, marked as backing off; false if hark stops
    /// meanwhile.
    async fn back_off(&self, stop: &CancellationToken, wait: Duration) -> bool {
        self.backing_off.store(true, Ordering::Release);
        let waited = tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        };
        self.backing_off.store(false, Ordering::Release);
        waited
    }

    /// Nothing to do now: idle, or waiting for a receiver that failed.
    fn settled(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0 || self.backing_off.load(Ordering::Acquire)
    }
}

/// What a lane does next.
enum Job {
    /// A stored delivery, held in memory: its lane's window had room.
    Held(u64, Delivery),
    /// A stored delivery past the window, read from the store when its turn comes: a long
    /// outage's backlog is in the store, not in memory (its sequence number is).
    Stored(u64),
    /// A re-post of a firing alert (not stored).
    Repost(Delivery),
    /// A delivery whose store write failed: held whatever the window (it is nowhere else).
    Unstored(u64, Delivery),
}

/// Deliveries a lane holds in memory; those behind them wait in the store.
const WINDOW: usize = 256;

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
                tls_clients: Mutex::new(Vec::new()),
                brokers: super::broker::Brokers::default(),
                store,
                stop,
                lanes: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                settling: Arc::default(),
                dropped: Mutex::default(),
                retrying: Mutex::default(),
            }),
        }
    }

    /// Queues a delivery behind the earlier ones of its rule and receiver. `stored` says
    /// whether it is in the store: one that is not (the write failed) is always held in
    /// memory, whatever the window.
    pub fn enqueue(&self, seq: u64, d: Delivery, stored: bool) {
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
        let job = if stored {
            Job::Held(seq, d)
        } else {
            Job::Unstored(seq, d)
        };
        self.shared.send(job, false);
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
}

impl Shared {
    fn action(&self, name: &str) -> Option<Arc<ActionConfig>> {
        self.actions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn is_broker(&self, name: &str) -> bool {
        self.action(name)
            .is_some_and(|a| matches!(a.kind, ActionKind::Broker(_)))
    }

    fn is_alertmanager(&self, name: &str) -> bool {
        self.action(name)
            .is_some_and(|a| matches!(a.kind, ActionKind::Alertmanager(_)))
    }

    /// Sends a job to its lane, starting the lane if needed; with `only_if_idle`, only
    /// when the lane has nothing to do. Whether it was sent.
    fn send(self: &Arc<Self>, job: Job, only_if_idle: bool) -> bool {
        let d = match &job {
            Job::Held(_, d) | Job::Repost(d) | Job::Unstored(_, d) => d,
            // Never sent from outside: a lane makes these itself.
            Job::Stored(_) => return false,
        };
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
        let queued = lane.state.queued.fetch_add(1, Ordering::AcqRel);
        let job = match job {
            Job::Held(seq, _) if queued >= WINDOW => Job::Stored(seq),
            other => other,
        };
        if lane.tx.send(job).is_err() {
            lane.state.queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
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
}
