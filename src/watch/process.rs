//! `process` watches: `start` when a selected process appears, `exit` the moment one ends,
//! and a `sample` of the selected processes every `every`.
//!
//! One monitor task serves every process watch: a single pass over /proc per tick (the
//! shortest `every` of the watches) finds new processes and reads the counters of the
//! followed ones (`scan.rs`, on the blocking pool). Exits are not polled: each followed
//! process gets a pidfd, which becomes readable when the process exits (a zombie counts as
//! dead), and the runtime wakes on it at once. Where pidfds are missing (Linux < 5.3),
//! an exit is seen at the next pass instead.

mod connector;
mod procfs;
mod scan;
mod wake;

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

use self::scan::{Cache, Found};
use self::wake::{exec_ready, follow_exit, Exit};
use crate::config::ProcessWatch;
use crate::event::Event;

pub use procfs::{parse_stat, Stat};

/// The monitor every process watch registers with. Cloning shares it.
#[derive(Clone, Default)]
pub struct Monitor {
    inner: Arc<Shared>,
}

struct Shared {
    registry: Mutex<Registry>,
    changed: Notify,
    exits: mpsc::UnboundedSender<Exit>,
    /// Taken by the monitor task when it starts.
    exit_rx: Mutex<Option<mpsc::UnboundedReceiver<Exit>>>,
}

impl Default for Shared {
    fn default() -> Self {
        let (exits, rx) = mpsc::unbounded_channel();
        Shared {
            registry: Mutex::default(),
            changed: Notify::new(),
            exits,
            exit_rx: Mutex::new(Some(rx)),
        }
    }
}

#[derive(Default)]
struct Registry {
    watches: HashMap<u64, Watched>,
    next_id: u64,
    running: bool,
}

struct Watched {
    name: Arc<str>,
    host: Arc<str>,
    config: Arc<ProcessWatch>,
    events: mpsc::Sender<Event>,
    members: HashMap<i32, Member>,
    next_sample: Instant,
}

struct Member {
    found: Found,
    /// Counters at the last sample, for CPU usage over the interval.
    last_cpu: Option<(u64, Instant)>,
    pidfd: Option<AbortHandle>,
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
            .pass(std::slice::from_ref(&config), &[false], &HashSet::new())
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
                Ok(fd) => Some(fd),
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

    async fn run(self, connector: Option<OwnedFd>) {
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
                execs = exec_ready(&connector) => {
                    match execs {
                        Ok((pids, dropped)) => {
                            if !pids.is_empty() {
                                cache = self.check_execs(cache, pids, &exit_tx).await;
                            }
                            if dropped > 0 {
                                // Starts of processes still running are found by a pass
                                // now; those already gone are lost, and said to be.
                                self.report_dropped(dropped).await;
                                next_pass = Instant::now();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the process connector failed; process starts are found at each pass over /proc");
                            connector = None;
                        }
                    }
                    continue;
                }
                // A watch came or went: a pass now.
                _ = self.inner.changed.notified() => {}
                _ = tokio::time::sleep_until(next_pass.into()) => {}
            }
            cache = self.pass(cache, &exit_tx).await;
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
    async fn pass(&self, mut cache: Cache, exit_tx: &mpsc::UnboundedSender<Exit>) -> Cache {
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
        let due_now = due.clone();
        let Ok((back, pass)) = tokio::task::spawn_blocking(move || {
            let pass = cache.pass(&configs, &due_now, &followed);
            (cache, pass)
        })
        .await
        else {
            return Cache::default();
        };
        cache = back;
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

impl Watched {
    fn event(&self, fields: Map<String, Value>, edge: bool) -> Event {
        Event {
            watch: Arc::clone(&self.name),
            source: "process",
            time: SystemTime::now(),
            host: Arc::clone(&self.host),
            edge,
            fields,
            cursor: None,
        }
    }

    /// Takes up the processes this pass found; reports starts, and exits the pidfd did
    /// not report (no pidfd, or a zombie found first).
    fn apply(
        &mut self,
        id: u64,
        found: &[Found],
        stats: &HashMap<i32, Stat>,
        exit_tx: &mpsc::UnboundedSender<Exit>,
        out: &mut Vec<(mpsc::Sender<Event>, Event)>,
    ) {
        self.drop_gone(found, stats, out);
        self.add_found(id, found, exit_tx, out);
    }

    /// Members no longer found: an `exit` for those that died.
    fn drop_gone(
        &mut self,
        found: &[Found],
        stats: &HashMap<i32, Stat>,
        out: &mut Vec<(mpsc::Sender<Event>, Event)>,
    ) {
        let now_found: HashMap<i32, &Found> = found.iter().map(|f| (f.pid, f)).collect();
        let gone: Vec<i32> = self
            .members
            .iter()
            .filter(|(pid, m)| {
                now_found
                    .get(pid)
                    .is_none_or(|f| f.start_ticks != m.found.start_ticks)
            })
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            let Some(m) = self.members.remove(&pid) else {
                continue;
            };
            if let Some(a) = &m.pidfd {
                a.abort();
            }
            let stat = stats
                .get(&pid)
                .filter(|s| s.start_ticks == m.found.start_ticks);
            let dead = stat.is_none_or(Stat::is_dead);
            // Alive but no longer selected (a pid file naming another process now): it
            // did not exit, so nothing is said.
            if dead {
                let status = stat.and_then(|s| s.exit_status);
                out.push((self.events.clone(), self.exit_event(&m.found, status)));
            }
        }
    }

    /// New members: a `start` for each, and their exits followed.
    fn add_found(
        &mut self,
        id: u64,
        found: &[Found],
        exit_tx: &mpsc::UnboundedSender<Exit>,
        out: &mut Vec<(mpsc::Sender<Event>, Event)>,
    ) {
        for f in found {
            if self.members.contains_key(&f.pid) {
                continue;
            }
            let pidfd = follow_exit(id, f.pid, f.start_ticks, exit_tx.clone());
            self.members.insert(
                f.pid,
                Member {
                    found: f.clone(),
                    last_cpu: None,
                    pidfd,
                },
            );
            let mut fields = self.process_fields(f);
            fields.insert("kind".into(), Value::from("start"));
            out.push((self.events.clone(), self.event(fields, true)));
        }
    }

    fn process_fields(&self, f: &Found) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("pid".into(), Value::from(f.pid));
        m.insert("name".into(), Value::from(f.name.as_str()));
        m.insert("cmdline".into(), Value::from(f.cmdline.as_str()));
        m.insert("count".into(), Value::from(self.members.len()));
        m
    }

    fn exit_event(&self, f: &Found, status: Option<i32>) -> Event {
        let mut fields = self.process_fields(f);
        fields.insert("kind".into(), Value::from("exit"));
        if let Some(st) = status {
            // A wait status: the exit code in the second byte, or the signal in the low 7 bits.
            if st & 0x7f == 0 {
                fields.insert("exit_code".into(), Value::from((st >> 8) & 0xff));
            } else {
                fields.insert("signal".into(), Value::from(st & 0x7f));
            }
        }
        self.event(fields, true)
    }

    /// The `sample` event: totals over the followed processes, and the pid, name and
    /// uptime of the longest-running one.
    fn sample(&mut self, stats: &HashMap<i32, Stat>, uptime: Duration, now: Instant) -> Event {
        let (mut cpu, mut memory, mut threads) = (0.0f64, 0u64, 0u64);
        let mut oldest: Option<(&Found, Duration)> = None;
        let mut count = 0usize;
        for m in self.members.values_mut() {
            let Some(s) = stats
                .get(&m.found.pid)
                .filter(|s| s.start_ticks == m.found.start_ticks && !s.is_dead())
            else {
                continue;
            };
            count += 1;
            let age = procfs::age(s.start_ticks, uptime);
            let (base_ticks, since) = match m.last_cpu {
                Some(prev) => prev,
                // First sample of this process: its average since it started.
                None => (0, now.checked_sub(age).unwrap_or(now)),
            };
            let elapsed = now.saturating_duration_since(since).as_secs_f64();
            if elapsed > 0.0 {
                let used =
                    s.cpu_ticks.saturating_sub(base_ticks) as f64 / procfs::clock_ticks() as f64;
                cpu += used / elapsed * 100.0;
            }
            m.last_cpu = Some((s.cpu_ticks, now));
            memory += s.rss_pages * procfs::page_size();
            threads += s.threads;
            if oldest.is_none_or(|(_, a)| age > a) {
                oldest = Some((&m.found, age));
            }
        }
        let mut f = Map::new();
        f.insert("kind".into(), Value::from("sample"));
        f.insert("count".into(), Value::from(count));
        f.insert(
            "cpu_percent".into(),
            Value::from((cpu * 100.0).round() / 100.0),
        );
        f.insert("memory_bytes".into(), Value::from(memory));
        f.insert("threads".into(), Value::from(threads));
        let (pid, name, cmdline, up) = match oldest {
            Some((o, age)) => (o.pid, o.name.clone(), o.cmdline.clone(), age.as_secs()),
            None => (0, String::new(), String::new(), 0),
        };
        f.insert("pid".into(), Value::from(pid));
        f.insert("name".into(), Value::from(name));
        f.insert("cmdline".into(), Value::from(cmdline));
        f.insert("uptime_s".into(), Value::from(up));
        self.event(f, false)
    }
}

/// One sample of a process watch, now, for `hark test`: what the selectors find.
pub fn sample_once(config: &ProcessWatch) -> Map<String, Value> {
    let mut cache = Cache::default();
    let config = Arc::new(config.clone());
    let first = cache.pass(std::slice::from_ref(&config), &[true], &HashSet::new());
    let (tx, _rx) = mpsc::channel(1);
    let mut w = Watched {
        name: Arc::from(""),
        host: Arc::from(""),
        config,
        events: tx,
        members: first.found[0]
            .iter()
            .map(|f| {
                (
                    f.pid,
                    Member {
                        found: f.clone(),
                        last_cpu: None,
                        pidfd: None,
                    },
                )
            })
            .collect(),
        next_sample: Instant::now(),
    };
    w.sample(&first.stats, first.uptime, Instant::now()).fields
}

#[cfg(test)]
mod tests;
