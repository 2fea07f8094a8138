//! One process watch's members and the events it makes of what the passes find.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::procfs::{self, Stat};
use super::scan::{Cache, Found, Look};
use super::wake::{follow_exit, Exit};
use crate::config::ProcessWatch;
use crate::event::Event;

pub(super) struct Watched {
    pub(super) name: Arc<str>,
    pub(super) host: Arc<str>,
    pub(super) config: Arc<ProcessWatch>,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) members: HashMap<i32, Member>,
    pub(super) next_sample: Instant,
}

pub(super) struct Member {
    pub(super) found: Found,
    /// Counters at the last sample, for CPU usage over the interval.
    pub(super) last_cpu: Option<(u64, Instant)>,
    pub(super) pidfd: Option<AbortHandle>,
}

impl Watched {
    pub(super) fn event(&self, fields: Map<String, Value>, edge: bool) -> Event {
        Event::new(&self.name, "process", &self.host, edge, fields)
    }

    /// Takes up the processes this pass found; reports starts, and exits the pidfd did
    /// not report (no pidfd, or a zombie found first).
    pub(super) fn apply(
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
    pub(super) fn add_found(
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
        m.insert("name".into(), Value::from(&*f.name));
        m.insert("cmdline".into(), Value::from(&*f.cmdline));
        m.insert("count".into(), Value::from(self.members.len()));
        m
    }

    pub(super) fn exit_event(&self, f: &Found, status: Option<i32>) -> Event {
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
    pub(super) fn sample(
        &mut self,
        stats: &HashMap<i32, Stat>,
        uptime: Duration,
        now: Instant,
    ) -> Event {
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
            Some((o, age)) => (o.pid, &*o.name, &*o.cmdline, age.as_secs()),
            None => (0, "", "", 0),
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
    let first = cache.pass(
        std::slice::from_ref(&config),
        &[true],
        &HashSet::new(),
        Look::All,
    );
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
