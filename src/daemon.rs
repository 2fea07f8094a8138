//! Start, run, reload and stop: wires the watches to the rule engine and the engine to
//! the actions, handles signals, answers the control socket and tells systemd what is
//! going on.

mod act;
mod calls;
mod footprint;
mod judge;
mod page;
mod pulse;
mod reload;
mod status;
mod web;

use self::act::Unsaved;
use self::pulse::{feed_watchdog, Heartbeat, WatchSeries};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::action::outbox::{Delivery, Outbox};
use crate::action::{Dispatcher, Slots};
use crate::config::{Config, WatchConfig};
use crate::control::{self, Call};
use crate::event::Event;
use crate::rule::{Engine, Silences};
use crate::store::{Store, StoreError};
use crate::watch::{self, WatchHandle};

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

/// The running daemon's parts.
struct Daemon {
    paths: Vec<PathBuf>,
    config: Config,
    host: Arc<str>,
    store: Arc<Store>,
    engine: Engine,
    dispatcher: Dispatcher,
    /// The shell actions' slots, kept across reloads.
    slots: Slots,
    /// Dispatchers of earlier configurations, whose actions may still run.
    retired: Vec<Dispatcher>,
    outbox: Outbox,
    watches: BTreeMap<String, WatchHandle>,
    shared: Arc<watch::Shared>,
    events: mpsc::Sender<Event>,
    silences: Silences,
    /// Per watch: events seen and the last one.
    seen: HashMap<Arc<str>, (u64, Arc<Event>)>,
    /// Per watch, its series of `hark_events_total` and of the event lag, looked up once.
    series: HashMap<Arc<str>, WatchSeries>,
    /// Per rule and state (firing or not), its series of `hark_firings_total`.
    firing_series: HashMap<(Arc<str>, bool), prometheus_client::metrics::counter::Counter>,
    /// The summary of each rule's latest firing while it fires (the status page shows it).
    summaries: HashMap<Arc<str>, String>,
    last_reload: Option<control::ReloadStatus>,
    started: SystemTime,
    next_seq: u64,
    unsaved: Unsaved,
    heartbeat: Heartbeat,
}

async fn run_with(
    config: Config,
    paths: Vec<PathBuf>,
    shutdown: CancellationToken,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> anyhow::Result<()> {
    let host: Arc<str> = Arc::from(config.daemon.host.as_str());
    let state_dir = config.daemon.state_dir.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&state_dir))
            .await
            .context("opening the state store panicked")??,
    );
    let mut engine = Engine::new(&config);
    let saved = blocking(&store, |s| s.rule_states()).await?;
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
    let (silences, over) =
        Silences::load(blocking(&store, |s| s.silences()).await?, SystemTime::now());
    if !over.is_empty() {
        let removals: Vec<_> = over.into_iter().map(|k| (k, None)).collect();
        blocking(&store, move |s| s.set_silences(&removals)).await?;
    }

    let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let shared = Arc::new(watch::Shared::for_watches(config.watches.values())?);
    // Where each log file or journal was read to: the watches take up their own as they
    // start.
    let positions = blocking(&store, |s| s.positions()).await?;
    *shared.positions.lock().unwrap_or_else(|p| p.into_inner()) = positions
        .into_iter()
        .filter_map(|(k, v)| Some((k, crate::event::Mark::from_bytes(&v)?)))
        .collect();
    let watches = start_watches(
        config.watches.values().cloned().collect(),
        Arc::clone(&host),
        Arc::clone(&shared),
        tx.clone(),
    )
    .await?
    .map_err(|(_, e)| e)?;

    let slots = Slots::new(config.daemon.max_concurrent_actions);
    let dispatcher = Dispatcher::new(&config, &slots);
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
    let next_seq = resume(&outbox, pending);
    outbox.start_resending();

    // The control socket; without it hark still runs (a person can still read the log).
    let (calls_tx, mut calls) = mpsc::channel::<Call>(16);
    let control_stop = CancellationToken::new();
    let group = config.daemon.control_group.as_ref().map(|g| g.id);
    match control::bind(&config.daemon.control_socket, group) {
        Ok(listener) => {
            tokio::spawn(control::serve(
                listener,
                calls_tx.clone(),
                group,
                control_stop.clone(),
            ));
        }
        Err(e) => {
            tracing::error!("{e:#}; `hark status`, `silence` and `unsilence` are unavailable")
        }
    }

    if let Some(addr) = config.daemon.metrics {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(address = %addr, "status page at http://{addr}/, metrics at /metrics");
                tokio::spawn(web::serve(
                    listener,
                    web::Hosts::new(addr, &config.daemon.http_hosts),
                    outbox.clone(),
                    calls_tx.clone(),
                    control_stop.clone(),
                ));
            }
            Err(e) => tracing::error!(address = %addr, error = %e, "cannot serve HTTP"),
        }
    }

    let queue = tx.downgrade();
    let clock = shared.clock.clone();
    tokio::spawn(crate::metrics::watch_runtime(
        move || queue.upgrade().map(|q| EVENT_QUEUE - q.capacity()),
        EVENT_QUEUE,
        control_stop.clone(),
        move |start, end| clock.sleep_between(start, end),
    ));

    let mut d = Daemon {
        paths,
        config,
        host,
        store,
        engine,
        dispatcher,
        slots,
        retired: Vec::new(),
        outbox,
        watches,
        shared,
        events: tx,
        silences,
        seen: HashMap::new(),
        series: HashMap::new(),
        firing_series: HashMap::new(),
        summaries: HashMap::new(),
        last_reload: None,
        started: SystemTime::now(),
        next_seq,
        unsaved: Unsaved::default(),
        heartbeat: Heartbeat::default(),
    };
    d.export_firing();
    crate::metrics::get().declare(
        d.config.watches.keys().map(String::as_str),
        d.config.rules.keys().map(String::as_str),
    );
    tracing::info!(
        watches = d.config.watches.len(),
        rules = d.config.rules.len(),
        actions = d.config.actions.len(),
        "hark is running"
    );
    notify(&[NotifyState::Ready, NotifyState::Status(&d.status_line())]);
    footprint::give_back_start_up();
    footprint::give_back_again_later(footprint::again_after(d.longest_interval()));

    // WATCHDOG=1 comes from a task of its own, as long as no turn of this loop takes
    // longer than the watchdog allows (a heartbeat at each turn's start and its steps;
    // waiting for work counts as fine): a burst of events does not starve it, an idle
    // daemon keeps feeding it, and a loop stuck on one step (a store write that never
    // returns) stops it, so systemd restarts hark.
    let heartbeat = d.heartbeat.clone();
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(feed_watchdog(
            every,
            heartbeat.clone(),
            control_stop.clone(),
        ));
    }
    // A reload loads the configuration off this loop; events keep being judged meanwhile.
    let (loaded_tx, mut loaded) = mpsc::channel::<reload::Loaded>(1);
    let mut loading = reload::Loading::default();
    loop {
        heartbeat.waiting();
        let deadline = d.engine.next_deadline();
        let positions_due = d.positions_due();
        let firings = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(signal) = signals.recv() => {
                heartbeat.beat();
                match signal {
                    Signal::Reload => loading.request(&d.paths, &loaded_tx),
                }
                continue;
            }
            Some(result) = loaded.recv() => {
                heartbeat.beat();
                d.reload(result).await;
                loading.done(&d.paths, &loaded_tx);
                footprint::give_back_start_up();
                footprint::give_back_again_later(footprint::again_after(d.longest_interval()));
                continue;
            }
            Some(call) = calls.recv() => {
                heartbeat.beat();
                d.answer(call).await;
                continue;
            }
            ev = rx.recv() => match ev {
                Some(ev) => {
                    heartbeat.beat();
                    // Events already waiting are judged together and their firings stored
                    // in one transaction: a burst costs one write, not one per event. A
                    // batch is cut short after BATCH_TIME so that calls and signals wait
                    // no longer than that.
                    let started = Instant::now();
                    let mut firings = d.on_event(Arc::new(ev));
                    for _ in 1..EVENT_BATCH {
                        if started.elapsed() > BATCH_TIME {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(ev) => firings.extend(d.on_event(Arc::new(ev))),
                            Err(_) => break,
                        }
                    }
                    firings
                }
                None => break,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                heartbeat.beat();
                d.on_tick()
            }
            _ = sleep_until(positions_due), if positions_due.is_some() => {
                heartbeat.beat();
                Vec::new()
            }
        };
        d.act(firings).await;
        // The other tasks of this thread (the watchdog, the control socket's connections,
        // metrics) get their turn between batches.
        tokio::task::yield_now().await;
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    d.store_positions().await;
    control_stop.cancel();
    let _ = std::fs::remove_file(&d.config.daemon.control_socket);
    // Watch threads may be blocked sending to the engine; closing the queue frees them.
    rx.close();
    let watches = std::mem::take(&mut d.watches);
    tokio::task::spawn_blocking(move || stop_all(watches.into_values()))
        .await
        .context("stopping watches panicked")?;
    // Running actions and deliveries in flight get the grace period; deliveries still
    // pending after it stay in the outbox for the next start.
    let grace = d.config.daemon.stop_timeout;
    let mut dispatchers = tokio::task::JoinSet::new();
    for x in std::iter::once(d.dispatcher).chain(d.retired) {
        dispatchers.spawn(x.shutdown(grace));
    }
    tokio::join!(dispatchers.join_all(), d.outbox.drain(grace));
    outbox_stop.cancel();
    tracing::info!("hark stopped");
    Ok(())
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

/// Starts watches off the runtime. On a failure, the ones started are stopped and the
/// name of the one that failed is returned with the error.
async fn start_watches(
    configs: Vec<WatchConfig>,
    host: Arc<str>,
    shared: Arc<watch::Shared>,
    events: mpsc::Sender<Event>,
) -> anyhow::Result<Result<BTreeMap<String, WatchHandle>, (String, watch::WatchError)>> {
    tokio::task::spawn_blocking(move || {
        let mut started = BTreeMap::new();
        for w in &configs {
            match watch::start(w, Arc::clone(&host), &shared, events.clone()) {
                Ok(h) => {
                    started.insert(w.name.clone(), h);
                }
                Err(e) => {
                    stop_all(started.into_values());
                    return Err((w.name.clone(), e));
                }
            }
        }
        Ok(started)
    })
    .await
    .context("watch start-up panicked")
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
                outbox.enqueue(seq, d, true);
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
        tracing::warn!(
            count = failed,
            "failed deliveries are kept in the outbox (see `hark status`)"
        );
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

fn stop_all(watches: impl IntoIterator<Item = WatchHandle>) {
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
