//! Start-up, as a sequence of named steps: the store, the rules' saved states, the
//! silences, the watches, the actions and their outbox, the listeners; then systemd is
//! told hark is ready.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pulse::{feed_watchdog, Tally};
use super::{
    blocking, control, footprint, notify, web, Actions, Call, Daemon, Inbox, Intake, Signal, Stops,
    Unsaved, EVENT_QUEUE,
};
use crate::action::outbox::Outbox;
use crate::config::Config;
use crate::rule::{Engine, Silences};
use crate::store::Store;

impl Daemon {
    pub(super) async fn start(
        config: Config,
        paths: Vec<std::path::PathBuf>,
        signals: mpsc::UnboundedReceiver<Signal>,
    ) -> anyhow::Result<(Daemon, Inbox, Stops)> {
        let store = open_store(&config).await?;
        let engine = restore_rules(&config, &store).await?;
        let silences = load_silences(&store).await?;
        let (intake, events) = Intake::start(&config, &store).await?;
        let stops = Stops {
            listeners: CancellationToken::new(),
            outbox: CancellationToken::new(),
        };
        let firing = engine.firing_keys();
        let actions = Actions::start(&config, &store, &firing, stops.outbox.clone()).await?;
        let (calls_tx, calls) = mpsc::channel::<Call>(16);
        let web = open_listeners(
            &config,
            &intake,
            &actions.outbox,
            &calls_tx,
            &stops.listeners,
        )
        .await;
        watch_runtime(&intake, &stops.listeners);
        let mut daemon = Daemon {
            paths,
            config,
            store,
            intake,
            engine,
            silences,
            actions,
            tally: Tally::default(),
            last_reload: None,
            started: SystemTime::now(),
            unsaved: Unsaved::default(),
            heartbeat: Default::default(),
            held: Default::default(),
            web,
        };
        // The windows that start at this load (rules that expect a match) are stored
        // before hark says it runs: a restart waits from them, not from its own start.
        daemon.act(Vec::new()).await;
        daemon.announce(&stops.listeners);
        let inbox = Inbox {
            events,
            calls,
            signals,
        };
        Ok((daemon, inbox, stops))
    }

    /// Metrics declared, the log and systemd told, memory of the start-up given back,
    /// and the watchdog fed from now on.
    fn announce(&self, stop: &CancellationToken) {
        self.export_firing();
        self.export_deadlines();
        crate::metrics::get().declare(
            self.config.watches.keys().map(String::as_str),
            self.config.rules.keys().map(String::as_str),
        );
        tracing::info!(
            watches = self.config.watches.len(),
            rules = self.config.rules.len(),
            actions = self.config.actions.len(),
            "hark is running"
        );
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status_line())]);
        footprint::give_back_start_up();
        footprint::give_back_again_later(footprint::again_after(self.longest_interval()));
        // WATCHDOG=1 comes from a task of its own, as long as no turn of the main loop
        // takes longer than the watchdog allows (a heartbeat at each turn's start and its
        // steps; waiting for work counts as fine): a burst of events does not starve it,
        // an idle daemon keeps feeding it, and a loop stuck on one step (a store write
        // that never returns) stops it, so systemd restarts hark.
        if let Some(every) = sd_notify::watchdog_enabled() {
            tokio::spawn(feed_watchdog(every, self.heartbeat.clone(), stop.clone()));
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    let state_dir = config.daemon.state_dir.clone();
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&state_dir))
            .await
            .context("opening the state store panicked")??,
    ))
}

/// The rule engine, with the states an earlier run saved; those of rules no longer
/// configured are removed from the store.
async fn restore_rules(config: &Config, store: &Arc<Store>) -> anyhow::Result<Engine> {
    let wall = crate::rule::WallClock::from_env().map_err(anyhow::Error::msg)?;
    if wall.is_shifted() {
        tracing::warn!(
            start = %crate::event::rfc3339(wall.at(Instant::now())),
            "the rules' wall clock starts at {} (schedules are judged by it)",
            crate::rule::CLOCK_START_VAR
        );
    }
    let mut engine = Engine::with_clock(config, wall);
    let saved = blocking(store, |s| s.rule_states()).await?;
    let stale = engine.restore(saved, Instant::now(), SystemTime::now());
    if !stale.is_empty() {
        tracing::info!(
            count = stale.len(),
            "forgetting the saved states of rules no longer configured"
        );
        let removals: Vec<_> = stale.into_iter().map(|k| (k, None)).collect();
        blocking(store, move |s| s.commit(&removals, &[], &[])).await?;
    }
    Ok(engine)
}

/// The silences in force; those that ended while hark was stopped are removed.
async fn load_silences(store: &Arc<Store>) -> anyhow::Result<Silences> {
    let stored = blocking(store, |s| s.silences()).await?;
    let (silences, over) = Silences::load(stored, SystemTime::now());
    if !over.is_empty() {
        let removals: Vec<_> = over.into_iter().map(|k| (k, None)).collect();
        blocking(store, move |s| s.set_silences(&removals)).await?;
    }
    Ok(silences)
}

/// The control socket and the HTTP listener (status page, metrics); without them hark
/// still runs (a person can still read the log).
async fn open_listeners(
    config: &Config,
    intake: &Intake,
    outbox: &Outbox,
    calls: &mpsc::Sender<Call>,
    stop: &CancellationToken,
) -> Option<Arc<web::Shared>> {
    let group = config.daemon.control_group.as_ref().map(|g| g.id);
    match control::bind(&config.daemon.control_socket, group) {
        Ok(listener) => {
            let serve = control::serve(listener, calls.clone(), group, stop.clone());
            tokio::spawn(serve);
        }
        Err(e) => {
            tracing::error!("{e:#}; `hark status`, `silence` and `unsilence` are unavailable")
        }
    }
    let addr = config.daemon.metrics?;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            let scheme = match config.daemon.listener.tls {
                Some(_) => "https",
                None => "http",
            };
            tracing::info!(address = %addr, "status page at {scheme}://{addr}/, metrics at /metrics");
            let shared = Arc::new(web::Shared::new(
                config,
                addr,
                intake.events.clone(),
                calls.clone(),
                outbox.clone(),
            ));
            tokio::spawn(web::serve(listener, Arc::clone(&shared), stop.clone()));
            Some(shared)
        }
        Err(e) => {
            tracing::error!(address = %addr, error = %e, "cannot serve HTTP");
            None
        }
    }
}

/// The runtime's own metrics: the event queue's depth, sampled.
fn watch_runtime(intake: &Intake, stop: &CancellationToken) {
    let queues = [intake.events.downgrade(), intake.streams.downgrade()];
    let clock = intake.shared.clock.clone();
    tokio::spawn(crate::metrics::watch_runtime(
        move || {
            let waiting = queues
                .iter()
                .map(|q| q.upgrade().map(|q| EVENT_QUEUE - q.capacity()));
            waiting.sum::<Option<usize>>()
        },
        2 * EVENT_QUEUE,
        stop.clone(),
        move |start, end| clock.sleep_between(start, end),
    ));
}
