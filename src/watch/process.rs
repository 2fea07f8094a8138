//! `process` watches: `start` when a selected process appears, `exit` the moment one ends,
//! and a `sample` of the selected processes every `every`.
//!
//! One monitor task serves every process watch: a single pass per tick (the shortest
//! `every` of the watches) finds new processes and reads the counters of the followed
//! ones (`scan.rs`). It lists /proc, or, where the process connector is trusted, looks
//! only at the pids the connector heard fork or end (`hearing.rs`); it runs on the
//! blocking pool unless it has nothing new to read. Exits are not polled: each followed
//! process gets a pidfd, which becomes readable when the process exits (a zombie counts as
//! dead), and the runtime wakes on it at once. Where pidfds are missing (Linux < 5.3),
//! an exit is seen at the next pass instead.

mod connector;
mod hearing;
mod procfs;
mod scan;
mod wake;
mod watched;

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};

use self::hearing::Hearing;
use self::scan::{Cache, Look};
use self::wake::{follow_exit, heard, Exit};
use self::watched::{Member, Watched};
use crate::config::ProcessWatch;
use crate::event::Event;

pub use procfs::{parse_stat, Stat};
pub use watched::sample_once;

/// A pass with no new pid to look at reads the counters of at most this many followed
/// processes on the runtime itself; more go to a blocking thread.
const QUICK_PASS_MAX: usize = 64;

/// The monitor every process watch registers with. Cloning shares it.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Shared>,
}

struct Shared {
    registry: Mutex<Registry>,
    changed: Notify,
    exits: mpsc::UnboundedSender<Exit>,
    /// Taken by the monitor task when it starts.
    exit_rx: Mutex<Option<mpsc::UnboundedReceiver<Exit>>>,
    /// What the passes wait on, with the periodic checks.
    clock: super::clock::Clock,
}

#[derive(Default)]
struct Registry {
    watches: HashMap<u64, Watched>,
    next_id: u64,
    running: bool,
}

/// A running process watch.
pub struct ProcessWatchHandle {
    id: u64,
    monitor: Monitor,
}

impl ProcessWatchHandle {
    pub fn stop(self) {
        let mut reg = self.monitor.lock();
        if let Some(w) = reg.watches.remove(&self.id) {
            for m in w.members.values() {
                if let Some(a) = &m.pidfd {
                    a.abort();
                }
            }
        }
        drop(reg);
        self.monitor.inner.changed.notify_one();
    }
}

impl Monitor {
    /// A monitor whose passes wait on `clock`.
    pub fn new(clock: super::clock::Clock) -> Monitor {
        let (exits, rx) = mpsc::unbounded_channel();
        Monitor {
            inner: Arc::new(Shared {
                clock,
                registry: Mutex::default(),
                changed: Notify::new(),
                exits,
                exit_rx: Mutex::new(Some(rx)),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a watch and follows the exits of the processes it selects now (those
    /// were running before: no `start` for them); starts the monitor task if needed.
    /// Blocking (one pass over /proc): call it off the async runtime, inside its context.
    pub fn add(
        &self,
        name: Arc<str>,
        host: Arc<str>,
        config: ProcessWatch,
        events: mpsc::Sender<Event>,
    ) -> ProcessWatchHandle {
        let config = Arc::new(config);
        let found = Cache::default()
            .pass(
                std::slice::from_ref(&config),
                &[false],
                &HashSet::new(),
                Look::All,
            )
            .found
            .swap_remove(0);
        let mut reg = self.lock();
        let id = reg.next_id;
        reg.next_id += 1;
        // Samples come with the shared passes, not at an offset of their own: a pass per
        // watch would multiply the cost of many watches. The first is at the next pass,
        // so `count == 0` reports a process that is not running at start.
        let members = found
            .into_iter()
            .map(|f| {
                let pidfd = follow_exit(id, f.pid, f.start_ticks, self.inner.exits.clone());
                (
                    f.pid,
                    Member {
                        found: f,
                        last_cpu: None,
                        pidfd,
                    },
                )
            })
            .collect();
        reg.watches.insert(
            id,
            Watched {
                name,
                host,
                config,
                events,
                members,
                next_sample: Instant::now(),
            },
        );
        if !reg.running {
            reg.running = true;
            // Opened here, before the daemon says it is ready, so the log says at start
            // whether starts are seen at once or at each pass.
            let connector = match connector::open() {
                // Subscribed: the probe's fork and exit are on their way.
                Ok(fd) => Some((fd, connector::probe())),
                Err(e) => {
                    tracing::info!(error = %e, "the kernel's process connector is not available; process starts are found at each pass over /proc");
                    None
                }
            };
            let monitor = self.clone();
            tokio::spawn(async move { monitor.run(connector).await });
        }
        drop(reg);
        self.inner.changed.notify_one();
        ProcessWatchHandle {
            id,
            monitor: self.clone(),
        }
    }

    async fn run(self, connector: Option<(OwnedFd, Option<i32>)>) {
        let taken = self
            .inner
            .exit_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut exit_rx) = taken else {
            return;
        };
        let exit_tx = self.inner.exits.clone();
        let mut cache = Cache::default();
        let mut next_pass = Instant::now();
        let mut anchors: std::collections::HashMap<Duration, Instant> = Default::default();
        let (connector, probe) = connector.unzip();
        let mut hearing = Hearing::new(probe.flatten());
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, unchanged, for as
        // long as the AsyncFd lives.
        let mut connector = connector
            .and_then(|fd| unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok());
        loop {
            let tick = {
                let mut reg = self.lock();
                if reg.watches.is_empty() {
                    reg.running = false;
                    drop(reg);
                    // The next monitor task takes the receiver up again.
                    *self.inner.exit_rx.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit_rx);
                    return;
                }
                reg.watches.values().map(|w| w.config.every).min()
            };
            let every = tick.unwrap_or(Duration::from_secs(10));
            tokio::select! {
                biased;
                Some(exit) = exit_rx.recv() => {
                    // Until it is reaped it stays listed, as a zombie: not to be selected again.
                    cache.mark_dead(exit.pid, exit.start_ticks);
                    self.on_exit(exit).await;
                    continue;
                }
                got = heard(&connector) => {
                    match got {
                        Ok((heard, dropped)) => {
                            let execs = hearing.take(heard);
                            if !execs.is_empty() {
                                cache = self.check_execs(cache, execs, &exit_tx).await;
                            }
                            if dropped > 0 {
                                // Starts of processes still running are found by a pass
                                // now; those already gone are lost, and said to be.
                                self.report_dropped(dropped).await;
                                hearing.lost();
                                next_pass = Instant::now();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the process connector failed; process starts are found at each pass over /proc");
                            connector = None;
                            hearing.lost_for_good();
                        }
                    }
                    continue;
                }
                // A watch came or went: a pass now.
                _ = self.inner.changed.notified() => {}
                _ = self.inner.clock.sleep_until(next_pass) => {}
            }
            cache = self.pass(cache, &exit_tx, hearing.next_pass()).await;
            // On the grid the periodic checks of this interval use: one wake-up for both.
            let anchor = *anchors
                .entry(every)
                .or_insert_with(|| crate::watch::periodic::anchor(every));
            next_pass = crate::watch::periodic::next_on_grid(anchor, every, Instant::now());
        }
    }

    /// The kernel dropped process events: every process watch gets an `overflow` event
    /// (starts of programs that were gone before a pass could see them are lost), and
    /// `hark_process_events_dropped_total` counts it.
    async fn report_dropped(&self, dropped: u64) {
        crate::metrics::get().process_events_dropped.inc_by(dropped);
        let out: Vec<_> = {
            let reg = self.lock();
            reg.watches
                .values()
                .map(|w| {
                    let mut fields = Map::new();
                    fields.insert("kind".into(), Value::from("overflow"));
                    (w.events.clone(), w.event(fields, true))
                })
                .collect()
        };
        tracing::warn!(
            dropped,
            "the kernel dropped process events (its connector's buffer was full): programs that started and ended meanwhile were not seen; a pass over /proc looks for the others now"
        );
        for (tx, ev) in out {
            let _ = tx.send(ev).await;
        }
    }

    /// Processes that just exec'd: a `start` for each one a watch selects.
    async fn check_execs(
        &self,
        mut cache: Cache,
        pids: Vec<i32>,
        exit_tx: &mpsc::UnboundedSender<Exit>,
    ) -> Cache {
        let (ids, configs) = self.configs();
        let Ok((back, found)) = tokio::task::spawn_blocking(move || {
            let found = cache.check(&pids, &configs);
            (cache, found)
        })
        .await
        else {
            return Cache::default();
        };
        let mut out = Vec::new();
        {
            let mut reg = self.lock();
            for (i, id) in ids.iter().enumerate() {
                if let Some(w) = reg.watches.get_mut(id) {
                    w.add_found(*id, &found[i], exit_tx, &mut out);
                }
            }
        }
        for (tx, ev) in out {
            let _ = tx.send(ev).await;
        }
        back
    }

    fn configs(&self) -> (Vec<u64>, Vec<Arc<ProcessWatch>>) {
        let reg = self.lock();
        let ids: Vec<u64> = reg.watches.keys().copied().collect();
        let configs = ids
            .iter()
            .map(|id| Arc::clone(&reg.watches[id].config))
            .collect();
        (ids, configs)
    }

    /// One pass: new and gone processes of every watch, and the samples that are due.
    /// `touched`: the pids to look at instead of listing /proc (`None`: list it).
    async fn pass(
        &self,
        mut cache: Cache,
        exit_tx: &mpsc::UnboundedSender<Exit>,
        touched: Option<HashSet<i32>>,
    ) -> Cache {
        let now = Instant::now();
        let (ids, configs) = self.configs();
        let (due, followed) = {
            let reg = self.lock();
            // A watch stopped since `configs` is not due; `apply` skips it below.
            let due: Vec<bool> = ids
                .iter()
                .map(|id| reg.watches.get(id).is_some_and(|w| now >= w.next_sample))
                .collect();
            let followed: HashSet<i32> = reg
                .watches
                .values()
                .flat_map(|w| w.members.keys().copied())
                .collect();
            (due, followed)
        };
        // Nothing new to read but the counters of a few followed processes (/proc/PID/stat
        // never waits on another process's memory, unlike a command line, nor on a disk,
        // unlike a pid file): done here, without a hand-off to a blocking thread and back.
        let quick = touched.as_ref().is_some_and(HashSet::is_empty)
            && followed.len() <= QUICK_PASS_MAX
            && configs.iter().all(|c| c.pidfile.is_none());
        let pass = if quick {
            cache.pass(&configs, &due, &followed, Look::Only(&HashSet::new()))
        } else {
            let due_now = due.clone();
            let Ok((back, pass)) = tokio::task::spawn_blocking(move || {
                let look = match &touched {
                    Some(pids) => Look::Only(pids),
                    None => Look::All,
                };
                let pass = cache.pass(&configs, &due_now, &followed, look);
                (cache, pass)
            })
            .await
            else {
                return Cache::default();
            };
            cache = back;
            pass
        };
        let mut out: Vec<(mpsc::Sender<Event>, Event)> = Vec::new();
        {
            let mut reg = self.lock();
            for (i, id) in ids.iter().enumerate() {
                let Some(w) = reg.watches.get_mut(id) else {
                    continue;
                };
                w.apply(*id, &pass.found[i], &pass.stats, exit_tx, &mut out);
                if due[i] {
                    // Due again at the pass nearest one interval from now: passes fall on
                    // a grid, and one a little early must not skip a sample.
                    let slack = (w.config.every / 2).min(Duration::from_millis(50));
                    w.next_sample = now + w.config.every - slack;
                    let ev = w.sample(&pass.stats, pass.uptime, now);
                    out.push((w.events.clone(), ev));
                }
            }
        }
        for (tx, ev) in out {
            let _ = tx.send(ev).await;
        }
        cache
    }

    async fn on_exit(&self, exit: Exit) {
        let out = {
            let mut reg = self.lock();
            let Some(w) = reg.watches.get_mut(&exit.watch) else {
                return;
            };
            match w.members.get(&exit.pid) {
                Some(m) if m.found.start_ticks == exit.start_ticks => {}
                _ => return,
            }
            let Some(m) = w.members.remove(&exit.pid) else {
                return;
            };
            (w.events.clone(), w.exit_event(&m.found, exit.status))
        };
        let _ = out.0.send(out.1).await;
    }
}

#[cfg(test)]
mod tests;
