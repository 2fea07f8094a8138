//! One pass over /proc for every process watch at once: which processes each watch
//! selects, and the counters of those it samples. Blocking (a command line can wait on
//! another process's memory), except a pass with nothing new to read (`Look::Only` of no
//! pid, no pid file): run it off the async thread otherwise.
//!
//! Cheap by design: a pass lists /proc (one getdents) or, when the process connector is
//! trusted, looks only at the pids it heard fork or end since the last pass; it reads
//! /proc/PID/stat once for each process it has not seen before, and reads the other files
//! a selector needs (exe, cmdline, owner) once per process, lazily. Only the processes a
//! watch already follows are read again on later passes, and a watch's selection is
//! worked out again only for the processes that changed since the last pass (new, gone,
//! exec'd, dead): an idle pass costs the followed processes, not the whole table. A pid
//! is taken to name the same
//! process from one pass to the next while it stays listed: Linux hands out pids in
//! increasing order up to `kernel.pid_max` before reusing one, so a reuse inside one
//! interval would take millions of process starts; a followed process is checked by its
//! start time on every pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::procfs::{self, Stat};
use crate::config::ProcessWatch;

/// What is known of one process, filled in as selectors need it.
struct Known {
    start_ticks: u64,
    comm: String,
    dead: bool,
    exe: Option<Option<String>>,
    cmdline: Option<Option<String>>,
    uid: Option<Option<u32>>,
}

impl Known {
    fn exe(&mut self, pid: i32) -> Option<&str> {
        self.exe
            .get_or_insert_with(|| procfs::exe_name(pid))
            .as_deref()
    }

    fn cmdline(&mut self, pid: i32) -> &str {
        self.cmdline
            .get_or_insert_with(|| procfs::read_cmdline(pid))
            .as_deref()
            .unwrap_or("")
    }

    fn uid(&mut self, pid: i32) -> Option<u32> {
        *self.uid.get_or_insert_with(|| procfs::uid(pid))
    }

    /// The process's name: its kernel name, or the executable's file name when the
    /// kernel's is that name cut to 15 bytes.
    fn name(&mut self, pid: i32) -> String {
        let comm = self.comm.clone();
        if comm.len() >= 15 {
            if let Some(exe) = self.exe(pid) {
                if exe.starts_with(&comm) {
                    return exe.to_string();
                }
            }
        }
        comm
    }
}

/// Which processes a pass looks at, besides those followed.
pub enum Look<'a> {
    /// Every process: /proc is listed.
    All,
    /// Only these, forked or ended since the last pass (the connector said so); every
    /// other process is as the last pass left it.
    Only(&'a HashSet<i32>),
}

/// The process table as the last pass left it.
#[derive(Default)]
pub struct Cache {
    procs: HashMap<i32, Known>,
    /// Pids whose entry came, went or changed (an exec, a death) since the last pass.
    changed: HashSet<i32>,
    /// What each (non-pid-file) watch selected at the last pass, by its config's address
    /// (the Arc kept here, so the address is not another's meanwhile).
    selected: HashMap<usize, (Arc<ProcessWatch>, Vec<Found>)>,
}

/// One process a watch selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    pub start_ticks: u64,
    pub name: Arc<str>,
    pub cmdline: Arc<str>,
}

pub struct Pass {
    /// For each watch (by its index in the request), what it selects.
    pub found: Vec<Vec<Found>>,
    /// Fresh counters of the processes asked for; a pid missing here is gone.
    pub stats: HashMap<i32, Stat>,
    pub uptime: Duration,
}

impl Cache {
    /// Lists /proc (or looks at the pids `look` names), selects for each watch, and reads
    /// the counters of `followed` and of what the watches whose sample is `due` select.
    pub fn pass(
        &mut self,
        watches: &[Arc<ProcessWatch>],
        due: &[bool],
        followed: &HashSet<i32>,
        look: Look<'_>,
    ) -> Pass {
        match look {
            Look::All => self.list(),
            Look::Only(pids) => {
                for &pid in pids {
                    match procfs::read_stat(pid) {
                        Ok(s) => self.refresh(pid, &s),
                        Err(_) => self.forget(pid),
                    }
                }
            }
        }
        let mut stats = HashMap::new();
        for &pid in followed {
            let Ok(s) = procfs::read_stat(pid) else {
                continue;
            };
            self.refresh(pid, &s);
            stats.insert(pid, s);
        }
        let uptime = procfs::uptime().unwrap_or_default();
        let found = self.select_each(watches, uptime);
        for (i, list) in found.iter().enumerate() {
            if !due.get(i).copied().unwrap_or(false) {
                continue;
            }
            for f in list {
                if stats.contains_key(&f.pid) {
                    continue;
                }
                if let Ok(s) = procfs::read_stat(f.pid) {
                    stats.insert(f.pid, s);
                }
            }
        }
        Pass {
            found,
            stats,
            uptime,
        }
    }

    /// Takes up every process /proc lists now and forgets those it no longer lists.
    fn list(&mut self) {
        let pids = procfs::list_pids().unwrap_or_default();
        let listed: HashSet<i32> = pids.iter().copied().collect();
        let changed = &mut self.changed;
        self.procs.retain(|pid, _| {
            let keep = listed.contains(pid);
            if !keep {
                changed.insert(*pid);
            }
            keep
        });
        for &pid in &pids {
            if self.procs.contains_key(&pid) {
                continue;
            }
            // A process that exits between the listing and this read is simply not seen.
            if let Ok(s) = procfs::read_stat(pid) {
                self.insert(pid, &s);
            }
        }
    }

    fn insert(&mut self, pid: i32, s: &Stat) {
        self.procs.insert(pid, known(s));
        self.changed.insert(pid);
    }

    fn forget(&mut self, pid: i32) {
        if self.procs.remove(&pid).is_some() {
            self.changed.insert(pid);
        }
    }

    /// What a fresh read of a process's stat says of it: whether a known process died, or
    /// a new one under its pid (what was known of the old one is forgotten).
    fn refresh(&mut self, pid: i32, s: &Stat) {
        match self.procs.get_mut(&pid) {
            Some(k) if k.start_ticks == s.start_ticks => {
                if k.dead != s.is_dead() {
                    k.dead = s.is_dead();
                    self.changed.insert(pid);
                }
            }
            _ => self.insert(pid, s),
        }
    }

    /// A process reported as exited: a zombie until its parent reaps it, never selected.
    pub fn mark_dead(&mut self, pid: i32, start_ticks: u64) {
        if let Some(k) = self.procs.get_mut(&pid) {
            if k.start_ticks == start_ticks && !k.dead {
                k.dead = true;
                self.changed.insert(pid);
            }
        }
    }

    /// What each watch selects now. A watch that was asked at the last pass keeps what it
    /// selected then, but for the processes that changed since; the others (new watches,
    /// or after more changes than processes) look at every process.
    fn select_each(&mut self, watches: &[Arc<ProcessWatch>], uptime: Duration) -> Vec<Vec<Found>> {
        let mut before = std::mem::take(&mut self.selected);
        let every = self.changed.len() >= self.procs.len();
        let found = watches
            .iter()
            .map(|w| {
                if let Some(path) = &w.pidfile {
                    return self.pidfile_process(path, uptime).into_iter().collect();
                }
                let key = Arc::as_ptr(w) as usize;
                let list = match before.remove(&key) {
                    Some((_, last)) if !every => self.select_changed(w, last),
                    _ => self.select(w),
                };
                self.selected.insert(key, (Arc::clone(w), list.clone()));
                list
            })
            .collect();
        self.changed.clear();
        found
    }

    /// What `w` selects among every process.
    fn select(&mut self, w: &ProcessWatch) -> Vec<Found> {
        let mut out: Vec<Found> = self
            .procs
            .iter_mut()
            .filter_map(|(&pid, k)| selects(w, pid, k).then(|| found(pid, k)))
            .collect();
        out.sort_by_key(|f| (f.start_ticks, f.pid));
        out
    }

    /// What `w` selects, from what it selected at the last pass: a process that did not
    /// change since is selected as it was.
    fn select_changed(&mut self, w: &ProcessWatch, mut last: Vec<Found>) -> Vec<Found> {
        last.retain(|f| !self.changed.contains(&f.pid));
        for &pid in &self.changed {
            if let Some(k) = self.procs.get_mut(&pid) {
                if selects(w, pid, k) {
                    last.push(found(pid, k));
                }
            }
        }
        last.sort_by_key(|f| (f.start_ticks, f.pid));
        last
    }

    /// What the watches select among `pids`, processes that just exec'd: read afresh,
    /// since an exec changes a process's name, executable and command line.
    pub fn check(&mut self, pids: &[i32], watches: &[Arc<ProcessWatch>]) -> Vec<Vec<Found>> {
        for &pid in pids {
            match procfs::read_stat(pid) {
                Ok(s) => self.insert(pid, &s),
                Err(_) => self.forget(pid),
            }
        }
        watches
            .iter()
            .map(|w| {
                if w.pidfile.is_some() {
                    // A pid file is written after the exec; the pass reads it.
                    return Vec::new();
                }
                pids.iter()
                    .filter_map(|pid| {
                        let k = self.procs.get_mut(pid)?;
                        selects(w, *pid, k).then(|| found(*pid, k))
                    })
                    .collect()
            })
            .collect()
    }

    /// The pid file's process, if the file names a live process that started before the
    /// file was written. A pid file left behind by a dead daemon can name a pid that
    /// another process has since taken: that one started after the file, and is not
    /// trusted.
    fn pidfile_process(&mut self, path: &std::path::Path, uptime: Duration) -> Option<Found> {
        let (pid, written) = procfs::read_pidfile(path)?;
        let k = self.procs.get_mut(&pid)?;
        if k.dead {
            return None;
        }
        let started = procfs::started_at(k.start_ticks, uptime);
        // Start times are known to a clock tick, and the two clocks drift a little.
        if started > written + Duration::from_secs(1) {
            return None;
        }
        Some(found(pid, k))
    }
}

/// Whether a (non-pid-file) watch selects this process.
fn selects(w: &ProcessWatch, pid: i32, k: &mut Known) -> bool {
    if k.dead {
        return false;
    }
    if let Some(name) = &w.name {
        if k.comm != *name && k.exe(pid) != Some(name.as_str()) {
            return false;
        }
    }
    if let Some(re) = &w.cmdline {
        if !re.is_match(k.cmdline(pid)) {
            return false;
        }
    }
    if let Some(user) = &w.user {
        if k.uid(pid) != Some(user.id) {
            return false;
        }
    }
    true
}

fn known(s: &Stat) -> Known {
    Known {
        start_ticks: s.start_ticks,
        comm: s.comm.clone(),
        dead: s.is_dead(),
        exe: None,
        cmdline: None,
        uid: None,
    }
}

fn found(pid: i32, k: &mut Known) -> Found {
    Found {
        pid,
        start_ticks: k.start_ticks,
        name: Arc::from(k.name(pid)),
        cmdline: Arc::from(k.cmdline(pid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, comm: &str, start_ticks: u64, state: char) -> Stat {
        Stat {
            pid,
            comm: comm.to_string(),
            state,
            cpu_ticks: 0,
            threads: 1,
            start_ticks,
            rss_pages: 0,
            exit_status: None,
        }
    }

    #[test]
    fn a_pass_reselects_only_what_changed_and_agrees_with_looking_at_every_process() {
        let watch = |n: &str| {
            Arc::new(ProcessWatch {
                name: Some(n.to_string()),
                cmdline: None,
                user: None,
                pidfile: None,
                every: Duration::from_secs(1),
            })
        };
        let mut watches = vec![watch("a"), watch("b"), watch("c")];
        let mut cache = Cache::default();
        let mut rng = fastrand::Rng::with_seed(22);
        // Pids no process has (past any pid_max): their exe and cmdline read as none.
        let pid = |rng: &mut fastrand::Rng| 50_000_000 + rng.i32(0..40);
        for round in 0..300u64 {
            for _ in 0..rng.usize(0..6) {
                let p = pid(&mut rng);
                let name = ["a", "b", "c", "d"][rng.usize(0..4)];
                match rng.u8(0..5) {
                    // A new process, or another under a pid a gone one had.
                    0 | 1 => cache.refresh(p, &stat(p, name, round, 'S')),
                    2 => cache.forget(p),
                    3 => {
                        let start = cache.procs.get(&p).map(|k| k.start_ticks);
                        if let Some(start) = start {
                            cache.mark_dead(p, start);
                        }
                    }
                    // An exec (read afresh, under a new name).
                    _ => {
                        let start = cache.procs.get(&p).map_or(round, |k| k.start_ticks);
                        cache.insert(p, &stat(p, name, start, 'S'));
                    }
                }
            }
            if round == 150 {
                // A reload: one watch replaced, one added.
                watches[1] = watch("b");
                watches.push(watch("d"));
            }
            let got = cache.select_each(&watches, Duration::ZERO);
            let every: Vec<Vec<Found>> = watches.iter().map(|w| cache.select(w)).collect();
            assert_eq!(got, every, "round {round}");
            assert!(cache.changed.is_empty());
        }
        assert!(
            cache.selected.len() == watches.len(),
            "watches gone are forgotten"
        );
    }
}
