//! Start, run and stop: wires the watches to the rule engine and the engine to the
//! actions, handles signals and tells systemd what is going on.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::action::Dispatcher;
use crate::config::Config;
use crate::event::Event;
use crate::rule::Engine;
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
    let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let watch_configs: Vec<_> = config.watches.values().cloned().collect();
    let watches = tokio::task::spawn_blocking(move || {
        let mut started = Vec::new();
        for w in &watch_configs {
            match watch::start(w, Arc::clone(&host), tx.clone()) {
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

    let mut engine = Engine::new(&config);
    let dispatcher = Dispatcher::new(&config);
    let status = format!(
        "{} watches, {} rules, {} actions",
        config.watches.len(),
        config.rules.len(),
        config.actions.len()
    );
    tracing::info!(
        watches = config.watches.len(),
        rules = config.rules.len(),
        actions = config.actions.len(),
        "hark is running"
    );
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);

    loop {
        let deadline = engine.next_deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => {
                    for firing in engine.on_event(Arc::new(ev), Instant::now()) {
                        dispatcher.dispatch(firing);
                    }
                }
                None => break,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                for firing in engine.on_tick(Instant::now()) {
                    dispatcher.dispatch(firing);
                }
            }
        }
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    // Watch threads may be blocked sending to the engine; closing the queue frees them.
    rx.close();
    tokio::task::spawn_blocking(move || stop_all(watches))
        .await
        .context("stopping watches panicked")?;
    dispatcher.shutdown(config.daemon.stop_timeout).await;
    tracing::info!("hark stopped");
    Ok(())
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
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
