//! The daemon's pulse: the watchdog fed while the main loop comes round, and the metric
//! series each event counts into.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::notify;

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

/// When the main loop last came round.
#[derive(Clone)]
pub(super) struct Heartbeat(Arc<std::sync::Mutex<Instant>>);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat(Arc::new(std::sync::Mutex::new(Instant::now())))
    }
}

impl Heartbeat {
    pub(super) fn beat(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn age(&self) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
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
