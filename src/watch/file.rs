//! The `file` watch: inotify through notify, with globs, paths that do not exist yet,
//! recursive trees, renames, editors' atomic saves, per-path debounce and overflow.
//!
//! The notify callback never blocks: it `try_send`s into a bounded channel, and when that
//! channel is full it raises a flag that the loop reports as an `overflow` event followed by
//! a rescan, exactly as a kernel queue overflow is reported. Everything else (stat, directory
//! scans, hashing, adding inotify watches) runs on this watch's own thread, never on the
//! async runtime.

mod paths;
mod queue;

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use self::paths::{plan, scan, Depth, Target};
use self::queue::{raw_queue, Msg, RawSender};
use super::WatchError;
use crate::config::FileWatch;
use crate::event::{encode_os, Event, Map, Value};

/// How long a temp file counts as "just created" for the atomic-save rule, and how long a
/// create reported from a scan suppresses the same create arriving from inotify.
const RECENT: Duration = Duration::from_secs(5);
/// A rename's first half waits this long for its second before it counts as a move out.
const RENAME_PAIRING: Duration = Duration::from_millis(20);
/// Bounds the look-watch-look loop of re-arming (a path is rarely this deep).
const MAX_REARM_ROUNDS: usize = 64;

/// A running file watch; dropping it does not stop it, `stop` does.
pub struct FileWatchHandle {
    stop: Arc<AtomicBool>,
    wake: RawSender,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileWatchHandle {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // When the queue is full the thread is busy draining it and sees the flag anyway.
        let _ = self.wake.try_send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Arms the watch (every directory it needs) and starts its thread. Blocking: call it off
/// the async runtime.
pub fn start(
    name: Arc<str>,
    host: Arc<str>,
    config: FileWatch,
    events: mpsc::Sender<Event>,
) -> Result<FileWatchHandle, WatchError> {
    let (tx, rx, queued) = raw_queue();
    let overflowed = Arc::new(AtomicBool::new(false));
    let cb_tx = tx.clone();
    let cb_flag = Arc::clone(&overflowed);
    let watcher = RecommendedWatcher::new(
        move |res| {
            if !cb_tx.try_send(Msg::Notify(res)) {
                cb_flag.store(true, Ordering::SeqCst);
            }
        },
        notify::Config::default(),
    )
    .map_err(|e| WatchError::from_notify(&name, None, e))?;
    let targets = config.paths.iter().cloned().map(Target::new).collect();
    let mut state = FileState {
        name,
        host,
        config,
        watcher,
        armed: Default::default(),
        targets,
        events,
        overflowed,
        pending: HashMap::new(),
        deadlines: VecDeque::new(),
        renames: HashMap::new(),
        recent_creates: HashMap::new(),
        synthesized: HashMap::new(),
        closed: false,
    };
    state.rearm(Arm::Initial)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(format!("hark-file-{}", state.name))
        .spawn(move || state.run(rx, &queued, &thread_stop))
        .map_err(|e| WatchError::Other(format!("cannot start a thread: {e}")))?;
    Ok(FileWatchHandle {
        stop,
        wake: tx,
        thread: Some(thread),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arm {
    /// At start: existing files are not news.
    Initial,
    /// After a change on the way to a target: what appeared is reported.
    Follow,
    /// After an overflow: every directory is watched again from scratch.
    Rescan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Modify,
    Delete,
    Rename,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Modify => "modify",
            Kind::Delete => "delete",
            Kind::Rename => "rename",
        }
    }
}

/// A path's burst, waiting for its debounce window to end.
struct Pending {
    kind: Kind,
    old_path: Option<PathBuf>,
    deadline: Instant,
}

struct FileState {
    name: Arc<str>,
    host: Arc<str>,
    config: FileWatch,
    watcher: RecommendedWatcher,
    armed: std::collections::BTreeMap<PathBuf, Depth>,
    targets: Vec<Target>,
    events: mpsc::Sender<Event>,
    overflowed: Arc<AtomicBool>,
    pending: HashMap<PathBuf, Pending>,
    /// Debounce deadlines in the order they were set; with one window length per watch
    /// this is also the order they expire in.
    deadlines: VecDeque<(Instant, PathBuf)>,
    /// First halves of renames, by inotify cookie.
    renames: HashMap<usize, (PathBuf, Instant)>,
    recent_creates: HashMap<PathBuf, Instant>,
    synthesized: HashMap<PathBuf, Instant>,
    /// The engine is gone: nothing more to do.
    closed: bool,
}

impl FileState {
    fn run(mut self, rx: Receiver<Msg>, queued: &AtomicUsize, stop: &AtomicBool) {
        loop {
            if stop.load(Ordering::SeqCst) || self.closed {
                return;
            }
            if self.overflowed.swap(false, Ordering::SeqCst) {
                self.overflow("hark's event queue was full");
            }
            let msg = match self.next_wakeup() {
                // Nothing pending: sleep until inotify has something. No polling.
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            if msg.is_ok() {
                queued.fetch_sub(1, Ordering::SeqCst);
            }
            match msg {
                Ok(Msg::Stop) => return,
                Ok(Msg::Notify(Ok(ev))) => self.on_notify(ev),
                Ok(Msg::Notify(Err(e))) => self.on_notify_error(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.flush_due(Instant::now());
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let debounce = self.deadlines.front().map(|(t, _)| *t);
        let rename = self
            .renames
            .values()
            .map(|(_, t)| *t + RENAME_PAIRING)
            .min();
        match (debounce, rename) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_notify_error(&self, e: notify::Error) {
        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
            tracing::error!(watch = %self.name, "{}", WatchError::from_notify(&self.name, None, e));
        } else {
            tracing::warn!(watch = %self.name, error = %e, "file watch error");
        }
    }

    fn on_notify(&mut self, ev: notify::Event) {
        tracing::trace!(watch = %self.name, kind = ?ev.kind, paths = ?ev.paths, "inotify");
        if ev.need_rescan() {
            self.overflow("the kernel's inotify queue overflowed");
            return;
        }
        let now = Instant::now();
        let mut paths = ev.paths.into_iter();
        match ev.kind {
            EventKind::Create(kind) => {
                if let Some(p) = paths.next() {
                    let is_dir = matches!(kind, notify::event::CreateKind::Folder);
                    self.on_create(p, is_dir, now, false);
                }
            }
            EventKind::Remove(_) => {
                if let Some(p) = paths.next() {
                    self.follow_if_on_the_way(&p);
                    self.record(p, Kind::Delete, None, now);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                if let Some(p) = paths.next() {
                    match ev.attrs.tracker() {
                        Some(cookie) => {
                            self.renames.insert(cookie, (p, now));
                        }
                        // A watched directory itself moved away.
                        None => {
                            self.follow_if_on_the_way(&p);
                            self.record(p, Kind::Delete, None, now);
                        }
                    }
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                if let Some(p) = paths.next() {
                    let paired = ev
                        .attrs
                        .tracker()
                        .is_some_and(|c| self.renames.contains_key(&c));
                    if !paired {
                        // Moved in from outside what is watched: new here.
                        let is_dir = p.is_dir();
                        self.on_create(p, is_dir, now, true);
                    }
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let (Some(c), (Some(from), Some(to))) =
                    (ev.attrs.tracker(), (paths.next(), paths.next()))
                {
                    self.renames.remove(&c);
                    self.on_rename(from, to, now);
                }
            }
            EventKind::Modify(ModifyKind::Name(_)) => {}
            EventKind::Modify(_) => {
                if let Some(p) = paths.next() {
                    self.record(p, Kind::Modify, None, now);
                }
            }
            // Opens and closes are not changes.
            EventKind::Access(_) | EventKind::Any | EventKind::Other => {}
        }
    }

    fn on_create(&mut self, path: PathBuf, is_dir: bool, now: Instant, moved_in: bool) {
        if self
            .synthesized
            .remove(&path)
            .is_some_and(|t| now - t < RECENT)
        {
            // Already reported from a scan of its new parent; but a scan does not re-arm,
            // so a directory on the way to a target must still be followed from here.
            self.follow_if_on_the_way(&path);
            return;
        }
        self.recent_creates.insert(path.clone(), now);
        self.record(path.clone(), Kind::Create, None, now);
        let followed = self.follow_if_on_the_way(&path);
        if is_dir && !followed && !moved_in && self.in_tree(&path) {
            // notify adds the new directory's watch only after the fact; whatever was
            // created in it meanwhile (`mkdir -p a/b/c && touch a/b/c/f`) is found by a scan
            // made after the watch is in place.
            self.watch_and_scan(&path, Depth::Tree, now);
        }
    }

    /// Whether `path` lies inside a directory watched with its whole tree.
    fn in_tree(&self, path: &Path) -> bool {
        self.armed
            .iter()
            .any(|(dir, depth)| *depth == Depth::Tree && path.starts_with(dir))
    }

    fn watch_and_scan(&mut self, dir: &Path, depth: Depth, now: Instant) {
        if let Err(e) = self.watcher.watch(dir, mode_of(depth)) {
            self.on_notify_error(e);
        }
        self.report_scan(dir, depth, now);
    }

    /// Reports as created what a scan finds below `dir`, unless inotify already did, and
    /// remembers it so the same create arriving from inotify later is not reported twice.
    fn report_scan(&mut self, dir: &Path, depth: Depth, now: Instant) {
        let mut found = Vec::new();
        scan(dir, depth, &mut found);
        for p in found {
            if self
                .recent_creates
                .get(&p)
                .is_some_and(|t| now - *t < RECENT)
            {
                continue;
            }
            self.synthesized.insert(p.clone(), now);
            self.recent_creates.insert(p.clone(), now);
            self.record(p, Kind::Create, None, now);
        }
    }

    fn on_rename(&mut self, from: PathBuf, to: PathBuf, now: Instant) {
        // Both sides may lie on the way to a target; each must be followed.
        self.follow_if_on_the_way(&from);
        self.follow_if_on_the_way(&to);
        let to_matches = self.is_reported(&to);
        let from_matches = self.is_reported(&from);
        let from_was_fresh = self
            .recent_creates
            .get(&from)
            .is_some_and(|t| now - *t < RECENT);
        if to_matches && (!from_matches || from_was_fresh) {
            // An editor's atomic save: a temp file written and renamed over the target.
            // What changed, for the user, is the target.
            self.forget_pending(&from);
            self.recent_creates.remove(&from);
            self.record(to, Kind::Modify, None, now);
        } else if to_matches || from_matches {
            self.forget_pending(&from);
            self.record(to, Kind::Rename, Some(from), now);
        }
    }

    fn forget_pending(&mut self, path: &Path) {
        self.pending.remove(path);
    }

    /// A change on the way to a target that is not there yet (or just went away) moves
    /// where it must be watched from. Returns whether anything was re-armed.
    fn follow_if_on_the_way(&mut self, path: &Path) -> bool {
        if !self.targets.iter().any(|t| t.is_on_the_way(path)) {
            return false;
        }
        if let Err(e) = self.rearm(Arm::Follow) {
            tracing::error!(watch = %self.name, error = %e, "cannot follow a watched path");
        }
        true
    }

    fn rearm(&mut self, why: Arm) -> Result<(), WatchError> {
        let existed: Vec<bool> = self.targets.iter().map(|t| t.exists).collect();
        let mut newly = Vec::new();
        // A directory can appear between looking and watching, and then no event would
        // ever tell us; so look again after watching, until what is watched is what
        // exists. Each round goes at least one level deeper, so this ends.
        for round in 0..MAX_REARM_ROUNDS {
            let force = why == Arm::Rescan && round == 0;
            let want = plan(&self.config, &mut self.targets);
            if want == self.armed && !force {
                break;
            }
            for dir in self.armed.keys() {
                if !want.contains_key(dir) || force {
                    let _ = self.watcher.unwatch(dir);
                }
            }
            for (dir, depth) in &want {
                let changed = self.armed.get(dir) != Some(depth);
                if !changed && !force {
                    continue;
                }
                if let Err(e) = self.watcher.watch(dir, mode_of(*depth)) {
                    let err = WatchError::from_notify(&self.name, Some(dir), e);
                    if why == Arm::Initial {
                        return Err(err);
                    }
                    tracing::error!(watch = %self.name, "{err}");
                    continue;
                }
                if changed {
                    newly.push((dir.clone(), *depth));
                }
            }
            tracing::debug!(watch = %self.name, dirs = ?want, "watching");
            self.armed = want;
        }
        if why != Arm::Follow {
            return Ok(());
        }
        // Targets that just appeared: report them, and what was created in them before
        // their watch was in place.
        let now = Instant::now();
        let appeared: Vec<PathBuf> = self
            .targets
            .iter()
            .zip(existed)
            .filter(|(t, before)| t.exists && !before)
            .map(|(t, _)| t.pattern.base.clone())
            .collect();
        for base in appeared {
            if !self.recent_creates.contains_key(&base) {
                self.synthesized.insert(base.clone(), now);
                self.recent_creates.insert(base.clone(), now);
                self.record(base, Kind::Create, None, now);
            }
        }
        for (dir, depth) in newly {
            self.report_scan(&dir, depth, now);
        }
        Ok(())
    }

    fn overflow(&mut self, why: &str) {
        tracing::warn!(watch = %self.name, "{why}: changes were lost; reporting an overflow and rescanning");
        let path = self
            .targets
            .first()
            .map(|t| t.pattern.base.clone())
            .unwrap_or_default();
        let mut fields = Map::new();
        fields.insert("kind".into(), Value::from("overflow"));
        fields.insert("path".into(), Value::from(encode_os(path.as_os_str())));
        self.send(fields);
        if let Err(e) = self.rearm(Arm::Rescan) {
            tracing::error!(watch = %self.name, error = %e, "rescan after overflow failed");
        }
    }

    fn is_reported(&self, path: &Path) -> bool {
        self.targets
            .iter()
            .any(|t| t.matches(path, self.config.recursive))
            && !self.config.ignore.is_ignored(path)
    }

    /// Notes a change of a reported path, starting or joining its debounce window.
    fn record(&mut self, path: PathBuf, kind: Kind, old_path: Option<PathBuf>, now: Instant) {
        if !self.is_reported(&path) && !old_path.as_deref().is_some_and(|p| self.is_reported(p)) {
            return;
        }
        if self.config.debounce.is_zero() {
            self.emit(&path, kind, old_path);
            return;
        }
        if let Some(p) = self.pending.get_mut(&path) {
            // The burst keeps the kind it started with.
            if p.old_path.is_none() {
                p.old_path = old_path;
            }
            return;
        }
        let deadline = now + self.config.debounce;
        self.pending.insert(
            path.clone(),
            Pending {
                kind,
                old_path,
                deadline,
            },
        );
        self.deadlines.push_back((deadline, path));
    }

    fn flush_due(&mut self, now: Instant) {
        while let Some((at, _)) = self.deadlines.front() {
            if *at > now {
                break;
            }
            let Some((at, path)) = self.deadlines.pop_front() else {
                break;
            };
            if let Some(p) = self.pending.get(&path) {
                if p.deadline == at {
                    if let Some(p) = self.pending.remove(&path) {
                        self.emit(&path, p.kind, p.old_path);
                    }
                }
            }
        }
        // Halves of renames that found no partner moved out of what is watched.
        let unpaired: Vec<usize> = self
            .renames
            .iter()
            .filter(|(_, (_, t))| now - *t >= RENAME_PAIRING)
            .map(|(c, _)| *c)
            .collect();
        for c in unpaired {
            if let Some((p, _)) = self.renames.remove(&c) {
                self.follow_if_on_the_way(&p);
                self.record(p, Kind::Delete, None, now);
            }
        }
        self.recent_creates.retain(|_, t| now - *t < RECENT);
        self.synthesized.retain(|_, t| now - *t < RECENT);
    }

    fn emit(&mut self, path: &Path, kind: Kind, old_path: Option<PathBuf>) {
        let wanted = match kind {
            Kind::Create => self.config.events.create,
            Kind::Modify => self.config.events.modify,
            Kind::Delete => self.config.events.delete,
            Kind::Rename => self.config.events.rename,
        };
        if !wanted {
            return;
        }
        let mut fields = Map::new();
        fields.insert("kind".into(), Value::from(kind.as_str()));
        fields.insert("path".into(), Value::from(encode_os(path.as_os_str())));
        if let Some(old) = &old_path {
            fields.insert("old_path".into(), Value::from(encode_os(old.as_os_str())));
        }
        describe_file(path, self.config.checksum, &mut fields);
        self.send(fields);
    }

    fn send(&mut self, fields: Map<String, Value>) {
        let event = Event {
            watch: Arc::clone(&self.name),
            source: "file",
            time: SystemTime::now(),
            host: Arc::clone(&self.host),
            edge: true,
            fields,
        };
        // Blocking here when the engine is behind lets the raw queue fill, which is
        // reported as an overflow: backpressure, never a silent drop.
        if self.events.blocking_send(event).is_err() {
            self.closed = true;
        }
    }
}

fn mode_of(depth: Depth) -> RecursiveMode {
    match depth {
        Depth::Tree => RecursiveMode::Recursive,
        Depth::Shallow => RecursiveMode::NonRecursive,
    }
}

/// `exists`, `size`, `mode`, `uid`, `gid`, `mtime` and, when asked, `sha256`, as the
/// path is now. A path that is gone has `exists = false` and none of the others.
fn describe_file(path: &Path, checksum: bool, fields: &mut Map<String, Value>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        fields.insert("exists".into(), Value::from(false));
        return;
    };
    fields.insert("exists".into(), Value::from(true));
    fields.insert("size".into(), Value::from(meta.len()));
    fields.insert(
        "mode".into(),
        Value::from(format!("{:04o}", meta.mode() & 0o7777)),
    );
    fields.insert("uid".into(), Value::from(meta.uid()));
    fields.insert("gid".into(), Value::from(meta.gid()));
    if let Ok(m) = meta.modified() {
        fields.insert("mtime".into(), Value::from(crate::event::rfc3339(m)));
    }
    if checksum && meta.is_file() {
        if let Some(h) = sha256_of(path) {
            fields.insert("sha256".into(), Value::from(h));
        }
    }
}

fn sha256_of(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    // Swapped for a FIFO since it was looked at: open_regular refuses it without waiting.
    let mut f = crate::fsread::open_regular(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}
