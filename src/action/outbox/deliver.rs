//! One delivery, tried until it is delivered, fails for good or is dropped; what became
//! of it stored (settled).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::send::{attempt, mail, notify, target, Outcome, Target};
use super::{lock, Delivery, LaneState, Shared, BACKOFF_MAX, BACKOFF_START};
use crate::event::human_duration;
use crate::trace::{self, Kind, Line};

/// How long a delivery waits for its action to come back into the configuration: a
/// config manager or an editor rewriting rules.d removes it for a moment, and that moment
/// must not fail a delivery for good.
const ACTION_GONE_GRACE: Duration = Duration::from_secs(600);

pub(super) async fn deliver(shared: &Shared, lane: &LaneState, seq: u64, mut d: Delivery) {
    let mut gone_since: Option<std::time::Instant> = None;
    loop {
        if lock(&shared.dropped).remove(&seq) {
            tracing::info!(rule = %d.rule, action = %d.action, id = seq, "a dropped delivery is not attempted again");
            return;
        }
        let action = shared.action(&d.action);
        if action.is_none() && action_may_come_back(&d, &mut gone_since) {
            if !lane.back_off(&shared.stop, Duration::from_secs(1)).await {
                return;
            }
            continue;
        }
        let Some(to) = target(action.as_deref(), d.target) else {
            let waited = match gone_since {
                Some(_) => format!(" (waited {})", human_duration(ACTION_GONE_GRACE)),
                None => String::new(),
            };
            let why = format!(
                "its action, or this receiver of it, is no longer in the configuration{waited}"
            );
            give_up(shared, seq, d, why).await;
            return;
        };
        let (outcome, took) = attempt_once(shared, &to, &mut d).await;
        let wait = match outcome {
            Outcome::Delivered => return delivered(shared, seq, &d, took).await,
            Outcome::Failed(why) => return give_up(shared, seq, d, why).await,
            Outcome::Retry(_, why) if to.retry().is_some_and(|max| d.attempts >= max) => {
                crate::metrics::get().delivery(&d.action, "retry");
                let why = format!("{why}; no attempts left (retry = {})", d.attempts);
                return give_up(shared, seq, d, why).await;
            }
            Outcome::Retry(after, why) => retrying(shared, seq, &d, took, after, &why),
        };
        if !lane.back_off(&shared.stop, wait).await {
            return;
        }
    }
}

/// Whether a delivery whose action is not in the configuration waits for it (a moment
/// after it went away) rather than failing.
fn action_may_come_back(d: &Delivery, gone_since: &mut Option<std::time::Instant>) -> bool {
    let since = *gone_since.get_or_insert_with(|| {
        tracing::warn!(rule = %d.rule, action = %d.action, "the action of a pending delivery is not in the configuration now; waiting up to {} for it to come back", human_duration(ACTION_GONE_GRACE));
        std::time::Instant::now()
    });
    since.elapsed() < ACTION_GONE_GRACE
}

/// One attempt at the receiver, counted and timed.
async fn attempt_once(shared: &Shared, to: &Target<'_>, d: &mut Delivery) -> (Outcome, Duration) {
    d.attempts += 1;
    let m = crate::metrics::get();
    if d.attempts == 1 {
        let waited = SystemTime::now()
            .duration_since(d.accepted)
            .unwrap_or_default();
        m.observe_wait(&d.action, waited);
    }
    let started = std::time::Instant::now();
    let outcome = match to {
        Target::Http(r) => attempt(&shared.client(r.tls), r, d).await,
        Target::Email(e) => mail(e, d).await,
        Target::Notify(n) => notify(&shared.client(&Default::default()), n, d).await,
    };
    let took = started.elapsed();
    m.observe_run(&d.action, took);
    (outcome, took)
}

/// A delivery's trace line.
fn line(d: &Delivery, what: &str, text: String, took: Duration) -> Line {
    Line::new(Kind::Action, what, text)
        .watch(&d.watch)
        .rule(&d.rule)
        .action(&d.action)
        .took(took)
}

async fn delivered(shared: &Shared, seq: u64, d: &Delivery, took: Duration) {
    said_delivered(d, took, "in");
    shared.retry_done(seq);
    settle(shared, vec![(seq, None)]).await;
}

/// A delivery made: counted, logged and traced (`how` it took: "in", "confirmed in").
pub(super) fn said_delivered(d: &Delivery, took: Duration, how: &str) {
    crate::metrics::get().delivery(&d.action, "delivered");
    tracing::info!(rule = %d.rule, action = %d.action, state = %d.state, attempts = d.attempts, "delivered");
    let text = format!(
        "delivered ({}) at attempt {} {how} {}",
        d.state,
        d.attempts,
        human_duration(took)
    );
    trace::publish(line(d, "delivered", text, took));
}

/// An attempt that failed and is tried again: said, and how long to wait.
fn retrying(
    shared: &Shared,
    seq: u64,
    d: &Delivery,
    took: Duration,
    after: Option<Duration>,
    why: &str,
) -> Duration {
    crate::metrics::get().delivery(&d.action, "retry");
    let wait = after.unwrap_or_else(|| backoff(d.attempts));
    shared.note_retry(seq, d.attempts, why, wait);
    tracing::warn!(rule = %d.rule, action = %d.action, attempts = d.attempts, error = %why, "delivery failed; retrying in {}", human_duration(wait));
    let text = format!(
        "attempt {} failed: {why}; retrying in {}",
        d.attempts,
        human_duration(wait)
    );
    let mut l = line(d, "retrying", text, took);
    l.retry_in_secs = Some(wait.as_secs_f64());
    trace::publish(l);
    wait
}

/// Exponential from one second, capped at five minutes, with "equal jitter": half of it
/// fixed, half random, so many hosts retrying one receiver spread out.
pub fn backoff(attempts: u32) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_MAX);
    capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
}

pub(super) async fn give_up(shared: &Shared, seq: u64, mut d: Delivery, why: String) {
    crate::metrics::get().delivery(&d.action, "failed");
    shared.retry_done(seq);
    // Stored first: once the log says so, `hark status` lists it as failed.
    d.failed = Some(why.clone());
    settle(shared, vec![(seq, Some(d.to_bytes()))]).await;
    tracing::error!(rule = %d.rule, action = %d.action, state = %d.state, attempts = d.attempts, error = %why, "delivery failed for good; kept in the outbox");
    trace::publish(
        Line::new(
            Kind::Action,
            "failed",
            format!(
                "delivery failed for good after {} attempt(s): {why}; kept in the outbox",
                d.attempts
            ),
        )
        .watch(&d.watch)
        .rule(&d.rule)
        .action(&d.action),
    );
}

/// Stores what became of deliveries. What cannot be stored now (a full disk) the store
/// keeps and writes with its next write; one task tries again every few seconds meanwhile,
/// so `hark status` and the outbox metrics do not show delivered entries as pending.
pub(super) async fn settle(shared: &Shared, changes: Vec<(u64, Option<Vec<u8>>)>) {
    let store = Arc::clone(&shared.store);
    match tokio::task::spawn_blocking(move || store.settle(&changes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot update the outbox now; trying again");
            if !shared.settling.swap(true, Ordering::AcqRel) {
                let (store, stop) = (Arc::clone(&shared.store), shared.stop.clone());
                let flag = Arc::clone(&shared.settling);
                tokio::spawn(async move {
                    while store.unsettled_count() > 0 {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(SETTLE_RETRY) => {}
                        }
                        let s = Arc::clone(&store);
                        if let Ok(Ok(())) = tokio::task::spawn_blocking(move || s.settle(&[])).await
                        {
                            tracing::info!("the outbox is up to date again");
                        }
                    }
                    flag.store(false, Ordering::Release);
                });
            }
        }
        Err(e) => tracing::error!(error = %e, "updating the outbox panicked"),
    }
}

/// How often updates a full disk refused are tried again.
const SETTLE_RETRY: Duration = Duration::from_secs(5);
