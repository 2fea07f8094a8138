//! Where the time goes, for `hark status`: the last samples of each timing, from which a
//! person reads p50 and p99 (the histograms at /metrics are for Prometheus), and the
//! runtime's health, sampled by a task of its own.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Samples kept per timing.
const KEPT: usize = 1000;

/// How often the runtime is sampled: at a wake-up of the daemon's clock (a periodic
/// check's) at least 5 s after the last sample, or 35 s after it if none comes. A wake-up
/// of its own would cost an idle daemon more than its checks (docs/benchmarks.md, idle
/// footprint); at 35 s, checks every 30 s always take it along.
const RUNTIME_TICK: Duration = Duration::from_secs(5);
const RUNTIME_LATEST: Duration = Duration::from_secs(35);
/// Maxima are taken over the samples of the last minute.
const RUNTIME_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchTiming {
    pub name: String,
    /// How long each check took (http, tcp, command watches).
    pub check: Option<Quantiles>,
    /// From an event's occurrence to the rules' verdict on it.
    pub lag: Option<Quantiles>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionTiming {
    pub name: String,
    /// From the firing to the action's start (a shell action waiting for one of
    /// max_concurrent_actions, a delivery for its turn in its lane).
    pub wait: Option<Quantiles>,
    /// How long it ran (a shell action), or each delivery attempt took.
    pub run: Option<Quantiles>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuntimeHealth {
    /// Events waiting for the rule engine now, and at most in the last minute.
    pub event_queue_depth: usize,
    pub event_queue_max: usize,
    pub event_queue_capacity: usize,
    /// How late the runtime ran its sampler after the clock woke it, last and at most in
    /// the last minute: a blocked worker thread shows here.
    pub loop_lag_ms: f64,
    pub loop_lag_max_ms: f64,
    /// Tasks alive on the runtime.
    pub tasks: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimingStatus {
    pub watches: Vec<WatchTiming>,
    pub actions: Vec<ActionTiming>,
    pub runtime: RuntimeHealth,
}

/// The last hour's graph keeps one point per check and this many seconds (the longest
/// check in it): 120 points a check, a few KiB, however often it runs.
const HOUR_STEP: f64 = 30.0;

#[derive(Default)]
struct Ring(VecDeque<f64>);

impl Ring {
    fn push(&mut self, seconds: f64) {
        if self.0.len() == KEPT {
            self.0.pop_front();
        }
        self.0.push_back(seconds);
    }

    fn quantiles(&self) -> Option<Quantiles> {
        if self.0.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.0.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] * 1000.0;
        Some(Quantiles {
            n: v.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

#[derive(Default)]
struct Inner {
    checks: BTreeMap<String, Ring>,
    /// Each periodic check's longest duration per `HOUR_STEP` over the last hour (the
    /// step's start in seconds since the epoch, ms), for the status page's graphs.
    hour: BTreeMap<String, VecDeque<(f64, f32)>>,
    lags: BTreeMap<String, Ring>,
    waits: BTreeMap<String, Ring>,
    runs: BTreeMap<String, Ring>,
    /// (when, loop lag in seconds, event queue depth), newest last, the last minute's.
    runtime: VecDeque<(Instant, f64, usize)>,
    queue_capacity: usize,
    tasks: usize,
}

/// The ring of `name`; its key is allocated only the first time (this is on every
/// event's path).
fn ring<'a>(map: &'a mut BTreeMap<String, Ring>, name: &str) -> &'a mut Ring {
    if !map.contains_key(name) {
        map.insert(name.to_string(), Ring::default());
    }
    map.get_mut(name).expect("inserted above")
}

#[derive(Default)]
pub struct Timings(Mutex<Inner>);

impl Timings {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn check(&self, watch: &str, seconds: f64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.with(|i| {
            ring(&mut i.checks, watch).push(seconds);
            if !i.hour.contains_key(watch) {
                i.hour.insert(watch.to_string(), VecDeque::new());
            }
            if let Some(h) = i.hour.get_mut(watch) {
                while h.front().is_some_and(|(t, _)| *t < now - 3600.0) {
                    h.pop_front();
                }
                let step = (now / HOUR_STEP).floor() * HOUR_STEP;
                let ms = (seconds * 1000.0) as f32;
                match h.back_mut() {
                    Some((t, max)) if *t == step => *max = max.max(ms),
                    _ => h.push_back((step, ms)),
                }
            }
        });
    }

    /// Each periodic check's longest duration per 30 s over the last hour: (the step's
    /// start in seconds since the epoch, ms).
    pub fn last_hour(&self) -> Vec<(String, Vec<(f64, f32)>)> {
        self.with(|i| {
            i.hour
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
                .collect()
        })
    }

    pub fn lag(&self, watch: &str, seconds: f64) {
        self.with(|i| ring(&mut i.lags, watch).push(seconds));
    }

    pub fn wait(&self, action: &str, seconds: f64) {
        self.with(|i| ring(&mut i.waits, action).push(seconds));
    }

    pub fn run(&self, action: &str, seconds: f64) {
        self.with(|i| ring(&mut i.runs, action).push(seconds));
    }

    fn runtime_sample(&self, lag: f64, depth: usize, capacity: usize, tasks: usize) {
        let now = Instant::now();
        self.with(|i| {
            while i
                .runtime
                .front()
                .is_some_and(|r| now.duration_since(r.0) > RUNTIME_WINDOW)
            {
                i.runtime.pop_front();
            }
            i.runtime.push_back((now, lag, depth));
            i.queue_capacity = capacity;
            i.tasks = tasks;
        });
    }

    /// Quantiles of the watches and actions named (others are left out: a reload may have
    /// removed them), and the runtime's health.
    pub fn status(&self, watches: &[String], actions: &[String]) -> TimingStatus {
        let now = Instant::now();
        self.with(|i| TimingStatus {
            watches: watches
                .iter()
                .map(|w| WatchTiming {
                    name: w.clone(),
                    check: i.checks.get(w).and_then(Ring::quantiles),
                    lag: i.lags.get(w).and_then(Ring::quantiles),
                })
                .collect(),
            actions: actions
                .iter()
                .map(|a| ActionTiming {
                    name: a.clone(),
                    wait: i.waits.get(a).and_then(Ring::quantiles),
                    run: i.runs.get(a).and_then(Ring::quantiles),
                })
                .collect(),
            runtime: RuntimeHealth {
                event_queue_depth: i.runtime.back().map_or(0, |r| r.2),
                event_queue_max: recent(&i.runtime, now).map(|r| r.2).max().unwrap_or(0),
                event_queue_capacity: i.queue_capacity,
                loop_lag_ms: i.runtime.back().map_or(0.0, |r| r.1 * 1000.0),
                loop_lag_max_ms: recent(&i.runtime, now).map(|r| r.1).fold(0.0, f64::max) * 1000.0,
                tasks: i.tasks,
            },
        })
    }
}

/// The runtime samples of the last minute (the newest is kept however old).
fn recent(
    samples: &VecDeque<(Instant, f64, usize)>,
    now: Instant,
) -> impl Iterator<Item = &(Instant, f64, usize)> {
    let n = samples.len();
    samples
        .iter()
        .enumerate()
        .filter(move |(k, r)| k + 1 == n || now.duration_since(r.0) <= RUNTIME_WINDOW)
        .map(|(_, r)| r)
}

/// Samples the runtime until `stop`: how late it runs this task after the clock woke it
/// (a worker blocked by something that should have been `spawn_blocking`), the depth of
/// the event queue (`depth` gives it, `None` once the queue is gone), and the tasks
/// alive. `sleep_between(start, end)` waits on the daemon's clock for its first wake-up
/// in the window and yields the instant it woke for.
pub async fn watch_runtime<F: std::future::Future<Output = Instant>>(
    depth: impl Fn() -> Option<usize>,
    capacity: usize,
    stop: CancellationToken,
    sleep_between: impl Fn(Instant, Instant) -> F,
) {
    let m = super::get();
    // The first sample at once: `hark status` right after the start has the queue's size.
    let mut last = Instant::now();
    let mut expected = last;
    loop {
        if expected > last {
            tokio::select! {
                _ = stop.cancelled() => return,
                due = sleep_between(expected, last + RUNTIME_LATEST) => expected = due,
            }
        }
        let now = Instant::now();
        let lag = now.saturating_duration_since(expected).as_secs_f64();
        let Some(depth) = depth() else { return };
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        m.timings.runtime_sample(lag, depth, capacity, tasks);
        m.loop_lag_seconds.set(lag);
        m.event_queue_depth.set(depth as i64);
        m.tasks.set(tasks as i64);
        last = now;
        expected = now + RUNTIME_TICK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_the_last_samples() {
        let mut r = Ring::default();
        assert_eq!(r.quantiles(), None);
        for i in 1..=100 {
            r.push(i as f64 / 1000.0);
        }
        let q = r.quantiles().unwrap();
        assert_eq!(
            (q.n, q.p50_ms.round(), q.p99_ms.round(), q.max_ms.round()),
            (100, 50.0, 99.0, 100.0)
        );
        for _ in 0..KEPT {
            r.push(0.001);
        }
        let q = r.quantiles().unwrap();
        assert_eq!((q.n, q.max_ms.round()), (KEPT, 1.0), "old samples age out");
    }
}
