//! The loop every periodic watch runs: one task per watch on the async runtime, a first
//! check at an offset inside the interval, then one every interval. Checks of one
//! interval share their offset in groups of `PHASE_GROUP` (see `phase`): a daemon with a
//! few checks wakes once per interval for all of them, not once per check, and a
//! thousand checks still do not start in the same millisecond. The ticks come from the
//! daemon's `Clock` (one timerfd for all). A check is awaited before the next tick is
//! taken, so checks of one watch never overlap; a check that runs past its watch's next
//! tick skips it (the next check is at the next tick of the grid), and delays no other.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::Emitter;
use crate::event::Event;

/// When a periodic watch checks: every `every`, on its interval's grid, woken by `clock`.
pub struct Schedule {
    pub every: Duration,
    pub clock: Clock,
}

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
fn spawn<F, Fut>(to: Emitter, Schedule { every, clock }: Schedule, mut check: F) -> PeriodicHandle
where
    F: FnMut(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Map<String, Value>> + Send,
{
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let anchor = anchor(every);
        let mut next = next_on_grid(anchor, every, std::time::Instant::now());
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = clock.sleep_until(next) => {}
            }
            let fields = tokio::select! {
                _ = token.cancelled() => return,
                f = check(token.clone()) => f,
            };
            let event = Event::new(&to.watch, to.source, &to.host, false, fields);
            tokio::select! {
                _ = token.cancelled() => return,
                sent = to.events.send(event) => if sent.is_err() { return },
            }
            next = next_on_grid(anchor, every, std::time::Instant::now());
        }
    });
    PeriodicHandle { stop }
}

/// `spawn` for a check that reads only its watch's config, shared between the checks.
pub fn spawn_checks<C, F, Fut>(
    to: Emitter,
    schedule: Schedule,
    config: C,
    check: F,
) -> PeriodicHandle
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Map<String, Value>> + Send,
{
    let config = Arc::new(config);
    spawn(to, schedule, move |stop| check(Arc::clone(&config), stop))
}

/// Checks that share one offset, at most. A check costs the daemon less when it wakes
/// for several at once (docs/benchmarks.md, idle footprint: a third less CPU for five
/// checks at 1 s), and a group this size is a burst a target and the loopback handle.
const PHASE_GROUP: usize = 64;

/// The offset, as a fraction of the interval, of the next periodic watch of `every`: the
/// first `PHASE_GROUP` watches of an interval share a random one, each further group gets
/// the next of a sequence that spreads groups evenly (the golden ratio's), so many checks
/// are spread over the interval and a few are not.
fn phase(every: Duration) -> f64 {
    static GROUPS: std::sync::Mutex<Option<std::collections::HashMap<Duration, (f64, usize)>>> =
        std::sync::Mutex::new(None);
    let mut g = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    let (first, n) = g
        .get_or_insert_with(Default::default)
        .entry(every)
        .or_insert_with(|| (fastrand::f64(), 0));
    let group = *n / PHASE_GROUP;
    *n += 1;
    (*first + group as f64 * 0.618_033_988_749_894_9).fract()
}

/// Where the schedules of interval `every` are laid out from: one instant for the whole
/// daemon plus the group's offset, so watches started later (a reload) and the process
/// monitor's passes fall on the same instants as the others.
pub fn anchor(every: Duration) -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now) + every.mul_f64(phase(every))
}

/// The first instant of `anchor + k * every` (k a whole number) after `now`.
pub fn next_on_grid(
    anchor: std::time::Instant,
    every: Duration,
    now: std::time::Instant,
) -> std::time::Instant {
    if now < anchor || every.is_zero() {
        return anchor;
    }
    let since = now - anchor;
    let k = since.as_nanos() / every.as_nanos() + 1;
    anchor + every * u32::try_from(k).unwrap_or(u32::MAX)
}

/// Milliseconds with microsecond precision, as event fields carry them.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_of_one_interval_share_an_offset_in_groups() {
        let every = Duration::from_millis(7_777);
        let phases: Vec<f64> = (0..PHASE_GROUP * 3).map(|_| phase(every)).collect();
        assert!(phases.iter().all(|p| (0.0..1.0).contains(p)));
        assert!(phases[..PHASE_GROUP].iter().all(|p| *p == phases[0]));
        assert!(phases[PHASE_GROUP..2 * PHASE_GROUP]
            .iter()
            .all(|p| *p == phases[PHASE_GROUP]));
        assert_ne!(phases[0], phases[PHASE_GROUP]);
        assert_ne!(phases[PHASE_GROUP], phases[2 * PHASE_GROUP]);
        // The grid: the next instant after now, never now itself, never before the anchor.
        let a = std::time::Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(next_on_grid(a, s, a - s), a);
        assert_eq!(next_on_grid(a, s, a), a + s);
        assert_eq!(next_on_grid(a, s, a + s / 2), a + s);
        assert_eq!(next_on_grid(a, s, a + s), a + 2 * s);
        assert_eq!(next_on_grid(a, s, a + s * 7 + s / 3), a + 8 * s);
        // Another interval has an offset of its own.
        let other = phase(Duration::from_millis(7_778));
        assert!((0.0..1.0).contains(&other));
    }
}
