//! The loop every periodic watch runs: one task per watch on the async runtime, a first
//! check at a random offset inside the interval (so a thousand checks do not start in the
//! same millisecond), then one every interval. A check is awaited before the next tick is
//! taken, so checks of one watch never overlap and a slow one delays only its own watch
//! (`MissedTickBehavior::Delay`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::event::Event;

/// A running periodic watch.
pub struct PeriodicHandle {
    stop: CancellationToken,
}

impl PeriodicHandle {
    pub fn stop(self) {
        self.stop.cancel();
    }
}

/// Spawns the watch's loop on the current runtime. `check` gets a token that is
/// cancelled when the watch stops, for checks that must clean up (a command's process
/// group).
fn spawn<F, Fut>(
    name: Arc<str>,
    host: Arc<str>,
    source: &'static str,
    every: Duration,
    mut check: F,
    events: mpsc::Sender<Event>,
) -> PeriodicHandle
where
    F: FnMut(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Map<String, Value>> + Send,
{
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let offset = every.mul_f64(fastrand::f64());
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let fields = tokio::select! {
                _ = token.cancelled() => return,
                f = check(token.clone()) => f,
            };
            let event = Event {
                watch: Arc::clone(&name),
                source,
                time: SystemTime::now(),
                host: Arc::clone(&host),
                edge: false,
                fields,
                cursor: None,
            };
            tokio::select! {
                _ = token.cancelled() => return,
                sent = events.send(event) => if sent.is_err() { return },
            }
        }
    });
    PeriodicHandle { stop }
}

/// `spawn` for a check that reads only its watch's config, shared between the checks.
pub fn spawn_checks<C, F, Fut>(
    name: Arc<str>,
    host: Arc<str>,
    source: &'static str,
    every: Duration,
    config: C,
    check: F,
    events: mpsc::Sender<Event>,
) -> PeriodicHandle
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Map<String, Value>> + Send,
{
    let config = Arc::new(config);
    spawn(
        name,
        host,
        source,
        every,
        move |stop| check(Arc::clone(&config), stop),
        events,
    )
}

/// Milliseconds with microsecond precision, as event fields carry them.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
