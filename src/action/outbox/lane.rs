//! A lane: the deliveries of one rule to one receiver, made in order, one at a time
//! (broker messages in batches).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::deliver::deliver;
use super::{alerts, publish, Delivery, Job, LaneState, Shared};

pub(super) async fn lane(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    state: Arc<LaneState>,
) {
    loop {
        let next = tokio::select! {
            _ = shared.stop.cancelled() => return,
            n = rx.recv() => n,
        };
        let Some(job) = next else { return };
        let Some(job) = held(&shared, &state, job).await else {
            continue;
        };
        match job {
            Job::Held(seq, d) if shared.is_broker(&d.action) => {
                // The messages waiting behind it go with it: published together, their
                // confirmations awaited together, in order.
                let mut batch = vec![(seq, d)];
                let mut repost = None;
                while batch.len() < publish::BATCH {
                    let Ok(next) = rx.try_recv() else { break };
                    match held(&shared, &state, next).await {
                        Some(Job::Held(s, d)) => batch.push((s, d)),
                        // An Alertmanager re-post, for an action a reload turned into a
                        // broker: after the batch, as before.
                        Some(Job::Repost(d)) => {
                            repost = Some(d);
                            break;
                        }
                        _ => {}
                    }
                }
                let n = batch.len();
                publish::deliver_batch(&shared, &state, batch).await;
                state.queued.fetch_sub(n, Ordering::AcqRel);
                if let Some(d) = repost {
                    alerts::repost(&shared, d).await;
                    state.queued.fetch_sub(1, Ordering::AcqRel);
                }
                continue;
            }
            Job::Held(seq, d) => deliver(&shared, &state, seq, d).await,
            Job::Repost(d) => alerts::repost(&shared, d).await,
            // `held` turned these into `Held`.
            Job::Stored(_) | Job::Unstored(..) => {}
        }
        state.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A job with its delivery in hand: one past the window is read from the store. One no
/// longer there (or that does not decode) is done with, and counted off.
async fn held(shared: &Shared, state: &LaneState, job: Job) -> Option<Job> {
    let seq = match job {
        Job::Stored(seq) => seq,
        Job::Unstored(seq, d) => return Some(Job::Held(seq, d)),
        other => return Some(other),
    };
    let store = Arc::clone(&shared.store);
    let entry = tokio::task::spawn_blocking(move || store.outbox_entry(seq)).await;
    let found = match entry {
        Ok(Ok(Some(bytes))) => serde_json::from_slice::<Delivery>(&bytes)
            .map_err(|e| tracing::error!(seq, error = %e, "an outbox entry does not decode; left in place"))
            .ok(),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::error!(seq, error = %e, "cannot read an outbox entry; it is tried again at the next start");
            None
        }
        Err(e) => {
            tracing::error!(seq, error = %e, "reading an outbox entry panicked");
            None
        }
    };
    match found {
        Some(d) => Some(Job::Held(seq, d)),
        None => {
            state.queued.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}
