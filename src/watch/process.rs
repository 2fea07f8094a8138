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

use std::collections::{HashMap, HashSet};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

use self::scan::{Cache, Found};
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

/// A followed process ended.
struct Exit {
    watch: u64,
    pid: i32,
    start_ticks: u64,
    /// Its wait status, when it could still be read from the zombie.
    status: Option<i32>,
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
        // The first sample comes at a random offset inside the interval.
        let offset = config.every.mul_f64(fastrand::f64());
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
                next_sample: Instant::now() + offset,
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
                        Ok(pids) if !pids.is_empty() => {
                            cache = self.check_execs(cache, pids, &exit_tx).await;
                        }
                        Ok(_) => {}
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
            next_pass = Instant::now() + every;
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
        let (ids, configs, due, followed) = {
            let reg = self.lock();
            let ids: Vec<u64> = reg.watches.keys().copied().collect();
            let configs: Vec<_> = ids
                .iter()
                .map(|id| Arc::clone(&reg.watches[id].config))
                .collect();
            let due: Vec<bool> = ids
                .iter()
                .map(|id| now >= reg.watches[id].next_sample)
                .collect();
            let followed: HashSet<i32> = reg
                .watches
                .values()
                .flat_map(|w| w.members.keys().copied())
                .collect();
            (ids, configs, due, followed)
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
                    w.next_sample = now + w.config.every;
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

/// The pids of processes that exec'd, once the connector has some; never, without it.
async fn exec_ready(connector: &Option<AsyncFd<OwnedFd>>) -> std::io::Result<Vec<i32>> {
    let Some(afd) = connector else {
        return std::future::pending().await;
    };
    let mut guard = afd.readable().await?;
    let mut pids = Vec::new();
    connector::drain(guard.get_inner(), &mut pids)?;
    // Read until it would block: wait for the next readiness.
    guard.clear_ready();
    Ok(pids)
}

/// Opens a pidfd for the process and waits, on the runtime, for it to become readable
/// (the process exited). `None` when pidfds are not available: the pass sees the exit.
fn follow_exit(
    watch: u64,
    pid: i32,
    start_ticks: u64,
    tx: mpsc::UnboundedSender<Exit>,
) -> Option<AbortHandle> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd moves into the AsyncFd and stays open, unchanged, for as long
    // as the AsyncFd lives; its raw fd is always the same.
    let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()?;
    let task = tokio::spawn(async move {
        // The pid may have been reused between the pass and pidfd_open: the fd is only
        // ours if the process still has the start time the pass saw.
        let same =
            procfs::read_stat(pid).is_ok_and(|s| s.start_ticks == start_ticks && !s.is_dead());
        if same {
            let _ = afd.readable().await;
        }
        let status = procfs::read_stat(pid)
            .ok()
            .filter(|s| s.start_ticks == start_ticks)
            .and_then(|s| s.exit_status);
        let _ = tx.send(Exit {
            watch,
            pid,
            start_ticks,
            status,
        });
    });
    Some(task.abort_handle())
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
mod tests {
    use super::*;

    fn watch_named(name: &str) -> ProcessWatch {
        ProcessWatch {
            name: Some(name.to_string()),
            cmdline: None,
            user: None,
            pidfile: None,
            every: Duration::from_secs(1),
        }
    }

    /// A copy of `sleep` under a name no other process has.
    fn unique_sleep(dir: &std::path::Path) -> (String, std::path::PathBuf) {
        let name = format!("hs{:08x}", fastrand::u32(..));
        let path = dir.join(&name);
        std::fs::copy("/bin/sleep", &path).unwrap();
        (name, path)
    }

    #[test]
    fn a_sample_counts_the_processes_the_pass_found() {
        let dir = tempfile::tempdir().unwrap();
        let (name, path) = unique_sleep(dir.path());
        let mut child = std::process::Command::new(&path).arg("30").spawn().unwrap();
        let fields = sample_once(&watch_named(&name));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(fields["count"], 1, "{fields:?}");
        assert_eq!(fields["pid"], child.id(), "{fields:?}");
        assert_eq!(fields["name"], name.as_str());
        assert!(fields["memory_bytes"].as_u64().unwrap() > 0, "{fields:?}");
        assert_eq!(fields["threads"], 1);
    }

    #[test]
    fn a_process_that_is_gone_before_its_sample_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (name, path) = unique_sleep(dir.path());
        let mut child = std::process::Command::new(&path).arg("30").spawn().unwrap();
        let config = Arc::new(watch_named(&name));
        let mut cache = Cache::default();
        let pass = cache.pass(std::slice::from_ref(&config), &[false], &HashSet::new());
        assert_eq!(pass.found[0].len(), 1);
        // Exits between the listing and the sampling.
        let _ = child.kill();
        let _ = child.wait();
        let followed: HashSet<i32> = [child.id() as i32].into();
        let pass = cache.pass(std::slice::from_ref(&config), &[true], &followed);
        assert!(pass.found[0].is_empty());
        assert!(!pass.stats.contains_key(&(child.id() as i32)));
    }

    #[test]
    fn cpu_percent_is_the_cpu_used_since_the_previous_sample() {
        let (tx, _rx) = mpsc::channel(1);
        let found = Found {
            pid: 4242,
            start_ticks: 1000,
            name: "x".into(),
            cmdline: "x".into(),
        };
        let t0 = Instant::now();
        let hz = procfs::clock_ticks();
        let mut w = Watched {
            name: Arc::from("w"),
            host: Arc::from("h"),
            config: Arc::new(watch_named("x")),
            events: tx,
            members: [(
                4242,
                Member {
                    found,
                    // A long-lived process that had used 10 s of CPU at the last sample.
                    last_cpu: Some((10 * hz, t0)),
                    pidfd: None,
                },
            )]
            .into(),
            next_sample: t0,
        };
        let stat = |cpu_ticks| Stat {
            pid: 4242,
            comm: "x".into(),
            state: 'R',
            cpu_ticks,
            threads: 3,
            start_ticks: 1000,
            rss_pages: 10,
            exit_status: None,
        };
        // Half a second of CPU in the two seconds since: 25 %, whatever its lifetime average.
        let stats: HashMap<i32, Stat> = [(4242, stat(10 * hz + hz / 2))].into();
        let uptime = Duration::from_secs(3600);
        let ev = w.sample(&stats, uptime, t0 + Duration::from_secs(2));
        assert_eq!(ev.fields["cpu_percent"], 25.0);
        assert_eq!(ev.fields["threads"], 3);
        assert_eq!(ev.fields["memory_bytes"], 10 * procfs::page_size());
        assert!(!ev.edge);
        // The next interval starts where this one ended: idle now.
        let ev = w.sample(&stats, uptime, t0 + Duration::from_secs(3));
        assert_eq!(ev.fields["cpu_percent"], 0.0);
    }

    #[test]
    fn a_zombie_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let (name, path) = unique_sleep(dir.path());
        let mut child = std::process::Command::new(&path).arg("30").spawn().unwrap();
        let config = Arc::new(watch_named(&name));
        let mut cache = Cache::default();
        let followed: HashSet<i32> = [child.id() as i32].into();
        assert_eq!(
            cache
                .pass(std::slice::from_ref(&config), &[true], &followed)
                .found[0]
                .len(),
            1
        );
        let _ = child.kill();
        // Not reaped yet: a zombie until `wait`.
        std::thread::sleep(Duration::from_millis(100));
        let pass = cache.pass(std::slice::from_ref(&config), &[true], &followed);
        let _ = child.wait();
        assert!(pass.found[0].is_empty(), "a zombie was selected");
        let st = pass.stats[&(child.id() as i32)].clone();
        assert!(st.is_dead());
        assert_eq!(st.exit_status.map(|s| s & 0x7f), Some(libc::SIGKILL));
    }
}
