//! The daemon's pulse: the watchdog fed while the main loop comes round, and the metric
//! series each event counts into.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::notify;

/// What the daemon has seen and fired, for `hark status`, the status page and metrics.
#[derive(Default)]
pub(super) struct Tally {
    /// Per watch: events seen and the last one.
    pub seen: HashMap<Arc<str>, (u64, Arc<crate::event::Event>)>,
    /// Per watch, its series of `hark_events_total` and of the event lag, looked up once.
    pub series: HashMap<Arc<str>, WatchSeries>,
    /// Per rule and state (firing or not), its series of `hark_firings_total`.
    pub firing_series: HashMap<(Arc<str>, bool), prometheus_client::metrics::counter::Counter>,
    /// The summary of each rule's latest firing while it fires (the status page shows it).
    pub summaries: HashMap<Arc<str>, crate::action::Summary>,
    /// The latest changes made through the control socket or the API.
    pub changes: std::collections::VecDeque<crate::control::ChangeStatus>,
}

/// How many changes `hark status` lists.
const CHANGES_KEPT: usize = 20;

impl Tally {
    /// A change, for `hark status`: who made it and what it was.
    pub fn changed(&mut self, by: &crate::control::Caller, what: String) {
        if self.changes.len() == CHANGES_KEPT {
            self.changes.pop_front();
        }
        self.changes.push_back(crate::control::ChangeStatus {
            time: crate::event::rfc3339(std::time::SystemTime::now()),
            by: by.to_string(),
            what,
        });
    }
}

impl Tally {
    /// A firing, in `hark_firings_total` of its rule and state.
    pub fn count(&mut self, firing: &crate::event::Firing) {
        let firing_now = firing.state == crate::event::FiringState::Firing;
        self.firing_series
            .entry((Arc::clone(&firing.rule), firing_now))
            .or_insert_with(|| {
                let labels =
                    crate::metrics::labels("rule", &firing.rule, "state", firing.state.as_str());
                crate::metrics::get().firings.get_or_create(&labels).clone()
            })
            .inc();
    }
}

/// A watch's metric series, kept so that an event costs no label allocation or lookup.
pub(super) struct WatchSeries {
    pub(super) events: prometheus_client::metrics::counter::Counter,
    pub(super) lag: prometheus_client::metrics::histogram::Histogram,
}

impl WatchSeries {
    pub(super) fn of(watch: &str) -> WatchSeries {
        let m = crate::metrics::get();
        let label = crate::metrics::label("watch", watch);
        WatchSeries {
            events: m.events.get_or_create(&label).clone(),
            lag: m.event_lag.get_or_create(&label).clone(),
        }
    }
}

/// Whether the main loop is stuck: since when it has been in one turn without progress
/// (`None` while it waits for work). Waiting is not being stuck: an idle daemon with only
/// event watches may wait for hours, and systemd's watchdog must still be fed.
#[derive(Clone, Default)]
pub(super) struct Heartbeat(Arc<std::sync::Mutex<Option<Instant>>>);

impl Heartbeat {
    /// Progress inside a turn (its start, or a step of a long one).
    pub(super) fn beat(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// The loop waits for work.
    pub(super) fn waiting(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How long the current turn has gone without progress; zero while waiting.
    fn age(&self) -> Duration {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// WATCHDOG=1 twice per `timeout`, while the main loop's last turn is younger than it.
pub(super) async fn feed_watchdog(
    timeout: Duration,
    heartbeat: Heartbeat,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(timeout / 2);
    let mut said = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if heartbeat.age() < timeout {
            notify(&[NotifyState::Watchdog]);
            said = false;
        } else if !said {
            tracing::error!(
                stuck_for = %crate::event::human_duration(heartbeat.age()),
                "the engine has not come round for longer than the watchdog allows; no WATCHDOG=1 until it does"
            );
            said = true;
        }
    }
}
