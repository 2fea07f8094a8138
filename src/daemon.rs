//! Start, run and stop: wires the watches to the rule engine and the engine to the
//! actions, handles signals and tells systemd what is going on.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::action::outbox::{self, Delivery, Outbox};
use crate::action::Dispatcher;
use crate::config::Config;
use crate::event::Event;
use crate::rule::{Engine, Saved};
use crate::store::{Store, StoreError};
use crate::watch::{self, WatchHandle};

/// Events waiting for the engine. A watch that finds it full waits, and its own raw queue
/// then reports an overflow: backpressure that is always visible, never a silent drop.
const EVENT_QUEUE: usize = 4096;

/// Runs until a SIGTERM or SIGINT, then stops gracefully.
pub async fn run_until_signalled(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle SIGINT")?;
    // SIGHUP would otherwise kill the daemon; until reload exists it changes nothing.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = hup.recv() => tracing::warn!("SIGHUP: reloading is not supported by this version; the configuration is unchanged"),
            }
        }
        trigger.cancel();
    });
    run(config, shutdown).await
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let host: Arc<str> = Arc::from(config.daemon.host.as_str());
    let state_dir = config.daemon.state_dir.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&state_dir))
            .await
            .context("opening the state store panicked")??,
    );
    let mut engine = Engine::new(&config);
    let saved: Vec<(String, Saved)> = blocking(&store, |s| s.rule_states())
        .await?
        .into_iter()
        .filter_map(|(k, v)| match serde_json::from_slice(&v) {
            Ok(saved) => Some((k, saved)),
            Err(e) => {
                tracing::warn!(key = %k, error = %e, "ignoring a saved rule state that does not decode");
                None
            }
        })
        .collect();
    let stale = engine.restore(saved, Instant::now(), SystemTime::now());
    if !stale.is_empty() {
        tracing::info!(
            count = stale.len(),
            "forgetting the saved states of rules no longer configured"
        );
        let removals: Vec<_> = stale.into_iter().map(|k| (k, None)).collect();
        blocking(&store, move |s| s.commit(&removals, &[], &[])).await?;
    }
    let pending = blocking(&store, |s| s.outbox()).await?;
    let stored_alerts = blocking(&store, |s| s.alerts()).await?;

    let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let shared = watch::Shared::for_watches(config.watches.values())?;
    let watch_configs: Vec<_> = config.watches.values().cloned().collect();
    let watches = tokio::task::spawn_blocking(move || {
        let mut started = Vec::new();
        for w in &watch_configs {
            match watch::start(w, Arc::clone(&host), &shared, tx.clone()) {
                Ok(h) => started.push(h),
                Err(e) => {
                    stop_all(started);
                    return Err(e);
                }
            }
        }
        Ok(started)
    })
    .await
    .context("watch start-up panicked")??;

    let dispatcher = Dispatcher::new(&config);
    let outbox_stop = CancellationToken::new();
    let outbox = Outbox::new(
        dispatcher.actions(),
        Arc::clone(&store),
        outbox_stop.clone(),
    );
    let stale = outbox.restore_alerts(stored_alerts, &engine.firing_keys());
    if !stale.is_empty() {
        tracing::info!(
            count = stale.len(),
            "no longer posting alerts whose rule stopped firing or whose action changed while hark was stopped; Alertmanager resolves them at their endsAt"
        );
        let removals: Vec<_> = stale.into_iter().map(|k| (k, None)).collect();
        blocking(&store, move |s| s.commit(&[], &[], &removals)).await?;
    }
    let mut next_seq = resume(&outbox, pending);
    outbox.start_resending();
    let status = |engine: &Engine| {
        format!(
            "{} watches, {} rules, {} firing",
            config.watches.len(),
            config.rules.len(),
            engine.firing().len()
        )
    };
    tracing::info!(
        watches = config.watches.len(),
        rules = config.rules.len(),
        actions = config.actions.len(),
        "hark is running"
    );
    notify(&[NotifyState::Ready, NotifyState::Status(&status(&engine))]);

    let mut unsaved = Unsaved::default();
    loop {
        let deadline = engine.next_deadline();
        let firings = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => engine.on_event(Arc::new(ev), Instant::now()),
                None => break,
            },
            _ = sleep_until(deadline), if deadline.is_some() => engine.on_tick(Instant::now()),
        };
        let mut jobs = Vec::new();
        let mut deliveries: Vec<(u64, Delivery)> = Vec::new();
        for firing in firings {
            let prepared = dispatcher.prepare(firing);
            jobs.extend(prepared.jobs);
            for d in prepared.deliveries {
                deliveries.push((next_seq, d));
                next_seq += 1;
            }
        }
        // A state change and its deliveries are on disk, in one transaction, before any
        // action starts: a restart never fires a rule twice for one outage, and loses no
        // delivery.
        let mut changes = std::mem::take(&mut unsaved.rules);
        changes.extend(
            engine
                .take_changes(Instant::now(), SystemTime::now())
                .into_iter()
                .map(|(k, v)| (k, v.and_then(|s| serde_json::to_vec(&s).ok()))),
        );
        let mut alerts = std::mem::take(&mut unsaved.alerts);
        alerts.extend(outbox::alert_changes(&deliveries));
        if !changes.is_empty() || !deliveries.is_empty() || !alerts.is_empty() {
            let rows: Vec<(u64, Vec<u8>)> =
                deliveries.iter().map(|(k, d)| (*k, d.to_bytes())).collect();
            let state_changed = !changes.is_empty();
            let (c, a) = (changes.clone(), alerts.clone());
            if let Err(e) = blocking(&store, move |s| s.commit(&c, &rows, &a)).await {
                // Deliveries are still attempted: losing an alert is worse than repeating
                // one; but they will not survive a restart. Rule states go with the next
                // write (later changes of a key after earlier ones).
                tracing::error!(error = %e, deliveries = deliveries.len(), "cannot write to the state store: these firings are not saved, and their deliveries would not survive a restart");
                unsaved = Unsaved {
                    rules: latest_per_key(changes),
                    alerts: latest_per_key(alerts),
                };
            }
            if state_changed {
                notify(&[NotifyState::Status(&status(&engine))]);
            }
        }
        dispatcher.start(jobs);
        for (seq, d) in deliveries {
            outbox.enqueue(seq, d);
        }
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    // Watch threads may be blocked sending to the engine; closing the queue frees them.
    rx.close();
    tokio::task::spawn_blocking(move || stop_all(watches))
        .await
        .context("stopping watches panicked")?;
    // Running actions and deliveries in flight get the grace period; deliveries still
    // pending after it stay in the outbox for the next start.
    tokio::join!(
        dispatcher.shutdown(config.daemon.stop_timeout),
        outbox.drain(config.daemon.stop_timeout)
    );
    outbox_stop.cancel();
    tracing::info!("hark stopped");
    Ok(())
}

/// Rule state and firing-alert changes a failed write could not store, kept for the next.
#[derive(Default)]
struct Unsaved {
    rules: Vec<(String, Option<Vec<u8>>)>,
    alerts: Vec<(String, Option<Vec<u8>>)>,
}

/// The last change of each key, in the order of those last changes.
fn latest_per_key(changes: Vec<(String, Option<Vec<u8>>)>) -> Vec<(String, Option<Vec<u8>>)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<_> = changes
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    out.reverse();
    out
}

/// Hands the deliveries a previous run left to the outbox; returns the next sequence
/// number. Failed deliveries stay where they are, visible, and are not retried.
fn resume(outbox: &Outbox, pending: Vec<(u64, Vec<u8>)>) -> u64 {
    let next = pending.iter().map(|(k, _)| k + 1).max().unwrap_or(1);
    let (mut resumed, mut failed) = (0, 0);
    for (seq, bytes) in pending {
        match serde_json::from_slice::<Delivery>(&bytes) {
            Ok(d) if d.failed.is_some() => failed += 1,
            Ok(d) => {
                resumed += 1;
                outbox.enqueue(seq, d);
            }
            Err(e) => {
                tracing::error!(seq, error = %e, "an outbox entry does not decode; left in place")
            }
        }
    }
    if resumed > 0 {
        tracing::info!(
            count = resumed,
            "resuming deliveries from before the restart"
        );
    }
    if failed > 0 {
        tracing::warn!(count = failed, "failed deliveries are kept in the outbox");
    }
    next
}

/// Runs a store operation off the runtime.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let store = Arc::clone(store);
    Ok(tokio::task::spawn_blocking(move || f(&store))
        .await
        .context("the state store panicked")??)
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

fn stop_all(watches: Vec<WatchHandle>) {
    for w in watches {
        w.stop();
    }
}

fn notify(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(state) {
        // Once: a socket that is gone stays gone, and every state change would say so.
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(error = %e, "cannot notify systemd (said once)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsaved_changes_keep_the_last_of_each_key_in_order() {
        let c = |k: &str, v: Option<&[u8]>| (k.to_string(), v.map(<[u8]>::to_vec));
        let merged = latest_per_key(vec![
            c("a", Some(b"1")),
            c("b", Some(b"1")),
            c("a", None),
            c("c", Some(b"1")),
            c("b", Some(b"2")),
        ]);
        assert_eq!(
            merged,
            vec![c("a", None), c("c", Some(b"1")), c("b", Some(b"2"))]
        );
    }
}
