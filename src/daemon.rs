//! Start, run, reload and stop: wires the watches to the rule engine and the engine to
//! the actions, handles signals, answers the control socket and tells systemd what is
//! going on. Start-up is start.rs, the main loop serve.rs, the stop stop.rs; the work
//! itself belongs to the parts wired (intake, engine, actions and their outbox).

mod act;
mod calls;
mod footprint;
mod intake;
mod judge;
mod maintenance;
mod page;
mod ping;
mod pulse;
mod reload;
mod serve;
mod start;
mod status;
mod stop;
mod web;

use self::act::{Actions, Unsaved};
use self::intake::Intake;
use self::pulse::{Heartbeat, Tally};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::{self, Call};
use crate::rule::{Engine, Silences};
use crate::store::{Store, StoreError};

/// Events waiting for the engine. A watch that finds it full waits, and its own raw queue
/// then reports an overflow: backpressure that is always visible, never a silent drop.
const EVENT_QUEUE: usize = 4096;

/// At most this many waiting events are judged before their firings are stored and
/// started.
const EVENT_BATCH: usize = 256;

/// The longest a batch of events is judged before the loop looks at calls and signals.
const BATCH_TIME: Duration = Duration::from_millis(20);

/// What the signal handler asks of the main loop.
enum Signal {
    Reload,
}

/// Runs until a SIGTERM or SIGINT, then stops gracefully; SIGHUP reloads the
/// configuration from `paths` (as given on the command line).
pub async fn run_until_signalled(config: Config, paths: Vec<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let (signals_tx, signals) = mpsc::unbounded_channel();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = signals_tx.send(Signal::Reload);
                }
            }
        }
        trigger.cancel();
    });
    run_with(config, paths, shutdown, signals).await
}

/// Runs the daemon until `shutdown` is cancelled (no reloads).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (_keep, signals) = mpsc::unbounded_channel();
    let paths = config.files.clone();
    run_with(config, paths, shutdown, signals).await
}

/// The running daemon's parts. Started by start.rs, run by serve.rs, stopped by stop.rs.
struct Daemon {
    /// The configuration files, as given on the command line (a reload reads them again).
    paths: Vec<PathBuf>,
    config: Config,
    store: Arc<Store>,
    intake: Intake,
    engine: Engine,
    silences: Silences,
    actions: Actions,
    /// What it has seen and fired, for status and metrics.
    tally: Tally,
    last_reload: Option<control::ReloadStatus>,
    started: SystemTime,
    unsaved: Unsaved,
    heartbeat: Heartbeat,
    /// Firings held by maintenance windows until they end.
    held: maintenance::Held,
    /// The HTTP listener's view of the configuration (tokens, push watches, TLS).
    web: Option<Arc<web::Shared>>,
}

/// What the main loop waits on besides its timers.
struct Inbox {
    events: intake::Lanes,
    calls: mpsc::Receiver<Call>,
    signals: mpsc::UnboundedReceiver<Signal>,
}

/// What stops the tasks the daemon started: the listeners, metrics and watchdog (first),
/// and the outbox (last, after its deliveries had their grace).
struct Stops {
    listeners: CancellationToken,
    outbox: CancellationToken,
}

async fn run_with(
    config: Config,
    paths: Vec<PathBuf>,
    shutdown: CancellationToken,
    signals: mpsc::UnboundedReceiver<Signal>,
) -> anyhow::Result<()> {
    let (mut daemon, mut inbox, stops) = Daemon::start(config, paths, signals).await?;
    daemon.serve(&mut inbox, &shutdown).await;
    daemon.stop(inbox, stops).await
}

impl Daemon {
    /// The longest interval of the watches that check on one.
    fn longest_interval(&self) -> Option<std::time::Duration> {
        self.config
            .watches
            .values()
            .filter_map(|w| w.kind.every())
            .max()
    }

    fn status_line(&self) -> String {
        format!(
            "{} watches, {} rules, {} firing",
            self.config.watches.len(),
            self.config.rules.len(),
            self.engine.firing().len()
        )
    }
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
