//! One pass over /proc for every process watch at once: which processes each watch
//! selects, and the counters of those it samples. Blocking (a command line can wait on
//! another process's memory), except a pass with nothing new to read (`Look::Only` of no
//! pid, no pid file): run it off the async thread otherwise.
//!
//! Cheap by design: a pass lists /proc (one getdents) or, when the process connector is
//! trusted, looks only at the pids it heard fork or end since the last pass; it reads
//! /proc/PID/stat once for each process it has not seen before, and reads the other files
//! a selector needs (exe, cmdline, owner) once per process, lazily. Only the processes a
//! watch already follows are read again on later passes. A pid is taken to name the same
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
}

/// One process a watch selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    pub start_ticks: u64,
    pub name: String,
    pub cmdline: String,
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
                        Err(_) => {
                            self.procs.remove(&pid);
                        }
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
        let found: Vec<Vec<Found>> = watches.iter().map(|w| self.select(w, uptime)).collect();
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
        self.procs.retain(|pid, _| listed.contains(pid));
        for &pid in &pids {
            if self.procs.contains_key(&pid) {
                continue;
            }
            // A process that exits between the listing and this read is simply not seen.
            if let Ok(s) = procfs::read_stat(pid) {
                self.procs.insert(pid, known(&s));
            }
        }
    }

    /// What a fresh read of a process's stat says of it: whether a known process died, or
    /// a new one under its pid (what was known of the old one is forgotten).
    fn refresh(&mut self, pid: i32, s: &Stat) {
        match self.procs.get_mut(&pid) {
            Some(k) if k.start_ticks == s.start_ticks => k.dead = s.is_dead(),
            _ => {
                self.procs.insert(pid, known(s));
            }
        }
    }

    /// A process reported as exited: a zombie until its parent reaps it, never selected.
    pub fn mark_dead(&mut self, pid: i32, start_ticks: u64) {
        if let Some(k) = self.procs.get_mut(&pid) {
            if k.start_ticks == start_ticks {
                k.dead = true;
            }
        }
    }

    fn select(&mut self, w: &ProcessWatch, uptime: Duration) -> Vec<Found> {
        if let Some(path) = &w.pidfile {
            return self.pidfile_process(path, uptime).into_iter().collect();
        }
        let mut out: Vec<Found> = self
            .procs
            .iter_mut()
            .filter_map(|(&pid, k)| selects(w, pid, k).then(|| found(pid, k)))
            .collect();
        out.sort_by_key(|f| (f.start_ticks, f.pid));
        out
    }

    /// What the watches select among `pids`, processes that just exec'd: read afresh,
    /// since an exec changes a process's name, executable and command line.
    pub fn check(&mut self, pids: &[i32], watches: &[Arc<ProcessWatch>]) -> Vec<Vec<Found>> {
        for &pid in pids {
            match procfs::read_stat(pid) {
                Ok(s) => {
                    self.procs.insert(pid, known(&s));
                }
                Err(_) => {
                    self.procs.remove(&pid);
                }
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
        name: k.name(pid),
        cmdline: k.cmdline(pid).to_string(),
    }
}
