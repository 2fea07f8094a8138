//! A broker lane: the messages waiting in it are published together and their
//! confirmations awaited together, in order. What was confirmed before the first failure
//! is settled in one write; the failed message and every one after it are published
//! again after the backoff, in order (so a resolve never overtakes its firing; a message
//! confirmed after a failure is sent twice, with the same key).

use std::time::{Instant, SystemTime};

use super::deliver::{backoff, deliver, give_up, said_delivered, settle};
use super::{Delivery, LaneState, Shared};
use crate::action::broker::Message;
use crate::config::ActionKind;
use crate::event::human_duration;
use crate::trace::{self, Kind, Line};

/// Messages published at once, at most.
pub(super) const BATCH: usize = 256;

pub(super) async fn deliver_batch(
    shared: &Shared,
    lane: &LaneState,
    mut batch: Vec<(u64, Delivery)>,
) {
    loop {
        // Messages dropped by `hark outbox drop` while they waited are let go.
        {
            let mut dropped = super::lock(&shared.dropped);
            batch.retain(|(seq, _)| !dropped.remove(seq));
        }
        let Some((_, first)) = batch.first() else {
            return;
        };
        let action = shared.action(&first.action);
        let Some(ActionKind::Broker(b)) = action.as_deref().map(|a| &a.kind) else {
            // A reload made it another kind of action (or removed it): one at a time.
            for (seq, d) in batch {
                deliver(shared, lane, seq, d).await;
            }
            return;
        };
        let (results, took) = publish(shared, b, &mut batch).await;
        let failed_at = results
            .iter()
            .position(Result::is_err)
            .unwrap_or(batch.len());
        let rest = batch.split_off(failed_at);
        for (_, d) in &batch {
            confirmed(d, took);
        }
        if !batch.is_empty() {
            for (seq, _) in &batch {
                shared.retry_done(*seq);
            }
            settle(shared, batch.iter().map(|(seq, _)| (*seq, None)).collect()).await;
        }
        batch = rest;
        let Some(Err(why)) = results.into_iter().nth(failed_at) else {
            return;
        };
        let Some((_, first)) = batch.first() else {
            return;
        };
        crate::metrics::get().delivery(&first.action, "retry");
        if b.retry.is_some_and(|max| first.attempts >= max) {
            let (seq, d) = batch.remove(0);
            let why = format!("{why}; no attempts left (retry = {})", d.attempts);
            give_up(shared, seq, d, why).await;
            continue;
        }
        let wait = backoff(first.attempts);
        retrying(shared, &batch, &why, wait, took);
        if !lane.back_off(&shared.stop, wait).await {
            return;
        }
    }
}

/// One attempt at the whole batch: each message's result, and how long it took.
async fn publish(
    shared: &Shared,
    b: &crate::config::BrokerAction,
    batch: &mut [(u64, Delivery)],
) -> (Vec<Result<(), String>>, std::time::Duration) {
    let m = crate::metrics::get();
    for (_, d) in batch.iter_mut() {
        d.attempts += 1;
        if d.attempts == 1 {
            let waited = SystemTime::now()
                .duration_since(d.accepted)
                .unwrap_or_default();
            m.observe_wait(&d.action, waited);
        }
    }
    let messages: Vec<Message<'_>> = batch
        .iter()
        .map(|(_, d)| Message {
            route: d.route.as_deref().unwrap_or_default(),
            body: d.body.as_bytes(),
            content_type: &d.content_type,
            key: &d.key,
        })
        .collect();
    let started = Instant::now();
    let results = shared.brokers.publish_all(b, &messages).await;
    (results, started.elapsed())
}

/// A message the broker confirmed.
fn confirmed(d: &Delivery, took: std::time::Duration) {
    crate::metrics::get().observe_run(&d.action, took);
    said_delivered(d, took, "confirmed in");
}

/// The failed message and those behind it wait `wait`: noted, logged and traced.
fn retrying(
    shared: &Shared,
    batch: &[(u64, Delivery)],
    why: &str,
    wait: std::time::Duration,
    took: std::time::Duration,
) {
    let Some((_, first)) = batch.first() else {
        return;
    };
    for (seq, d) in batch {
        shared.note_retry(*seq, d.attempts, why, wait);
    }
    tracing::warn!(rule = %first.rule, action = %first.action, attempts = first.attempts, waiting = batch.len(), error = %why, "delivery failed; retrying in {}", human_duration(wait));
    let text = format!(
        "attempt {} failed: {why}; retrying in {} ({} message(s) waiting)",
        first.attempts,
        human_duration(wait),
        batch.len()
    );
    let mut l = Line::new(Kind::Action, "retrying", text)
        .watch(&first.watch)
        .rule(&first.rule)
        .action(&first.action)
        .took(took);
    l.retry_in_secs = Some(wait.as_secs_f64());
    trace::publish(l);
}
