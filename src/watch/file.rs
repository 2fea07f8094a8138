//! The `file` watch: globs, paths that do not exist yet, recursive trees, renames, editors'
//! atomic saves, per-path debounce and overflow recovery, over the daemon's one inotify
//! instance (`inotify.rs`), on whose thread every file watch runs. Work per event is
//! constant: expiries are kept in time order, never scanned.

mod arm;
mod describe;
mod follow;
mod index;
mod paths;
mod recent;
mod recover;
mod tenant;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use self::arm::Dirs;
use self::paths::{Depth, Target};
use self::recent::{Recent, Touched};
use super::inotify::Cx;
use super::WatchError;
use crate::config::FileWatch;
use crate::event::{encode_os, Event, Map, Value};

/// How long a created file counts as "just created" for the atomic-save rule, and how long a
/// create reported from a scan suppresses the same create arriving from inotify.
pub(super) const RECENT: Duration = Duration::from_secs(5);
/// A rename's first half waits this long for its second before it counts as a move out.
const RENAME_PAIRING: Duration = Duration::from_millis(20);
/// Bounds the look-watch-look loop of re-arming (a path is rarely this deep).
const MAX_REARM_ROUNDS: usize = 64;

/// A running file watch.
pub struct FileWatchHandle {
    hub: super::inotify::HubHandle,
    problems: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FileWatchHandle {
    pub(super) fn new(
        hub: super::inotify::HubHandle,
        problems: Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Self {
        FileWatchHandle { hub, problems }
    }
}

impl FileWatchHandle {
    /// Stops the watch. Blocking: call it off the async runtime.
    pub fn stop(self) {
        self.hub.stop();
    }

    /// What the watch could not arm: unreadable subtrees, the inotify watch limit.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Hands the watch to the daemon's inotify thread, which arms it before this returns.
/// Blocking: call it off the async runtime.
pub fn start(
    name: Arc<str>,
    host: Arc<str>,
    config: FileWatch,
    events: mpsc::Sender<Event>,
    hub: &super::inotify::Hub,
) -> Result<FileWatchHandle, WatchError> {
    let state = FileState::new(Arc::clone(&name), host, config, events);
    let problems = state.problems_handle();
    let hub = hub.add(Box::new(state)).map_err(|e| hub_error(&name, e))?;
    Ok(FileWatchHandle { hub, problems })
}

/// Why the inotify thread could not take a watch.
pub(super) fn hub_error(name: &str, e: std::io::Error) -> WatchError {
    match e.raw_os_error() {
        Some(libc::EMFILE) => WatchError::InstanceLimit {
            watch: name.to_string(),
            limit: super::read_sysctl("max_user_instances"),
        },
        _ => WatchError::Other(format!("watch `{name}`: cannot start inotify: {e}")),
    }
}

impl FileState {
    pub fn new(
        name: Arc<str>,
        host: Arc<str>,
        config: FileWatch,
        events: mpsc::Sender<Event>,
    ) -> FileState {
        let targets = config.paths.iter().cloned().map(Target::new).collect();
        FileState {
            name,
            host,
            config,
            events,
            targets,
            roots: BTreeMap::new(),
            dirs: Dirs::default(),
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            renames: HashMap::new(),
            rename_order: VecDeque::new(),
            recent_creates: Recent::default(),
            touched: Touched::default(),
            synthesized: Recent::default(),
            scheduled: None,
            closed: false,
        }
    }

    /// What the watch could not arm, shared with its handle.
    pub fn problems_handle(&self) -> Arc<std::sync::Mutex<Vec<String>>> {
        Arc::clone(&self.dirs.problems)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arm {
    /// At start: existing files are not news.
    Initial,
    /// After a change on the way to a target: what appeared is reported.
    Follow,
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

pub struct FileState {
    name: Arc<str>,
    host: Arc<str>,
    config: FileWatch,
    events: mpsc::Sender<Event>,
    targets: Vec<Target>,
    /// The directories `plan` asked for, as armed.
    roots: BTreeMap<PathBuf, Depth>,
    dirs: Dirs,
    pending: HashMap<PathBuf, Pending>,
    /// Debounce deadlines in the order they were set; with one window length per watch
    /// this is also the order they expire in.
    deadlines: VecDeque<(Instant, PathBuf)>,
    /// First halves of renames, by inotify cookie, and their order.
    renames: HashMap<u32, (PathBuf, Instant)>,
    rename_order: VecDeque<(Instant, u32)>,
    recent_creates: Recent,
    synthesized: Recent,
    /// Paths inotify reported created or modified since shortly before the kernel's queue
    /// was last read empty: a rescan after an overflow does not report them again.
    touched: Touched,
    /// The deadline the inotify thread has this watch down for.
    pub scheduled: Option<Instant>,
    /// The engine is gone: nothing more to do.
    closed: bool,
}

impl FileState {
    /// Notes a path inotify reported created or modified, for a rescan after an overflow.
    fn touched(&mut self, path: recent::Key, cx: &Cx<'_>) {
        self.touched.insert(
            path,
            SystemTime::now(),
            cx.drained
                .checked_sub(recover::CTIME_SLACK)
                .unwrap_or(cx.drained),
        );
    }

    /// Keeps a directory's names up to date for overflow recovery.
    fn note(&mut self, wd: i32, created: bool, name: &OsStr) {
        if let Some(dir) = self.dirs.by_wd.get_mut(&wd) {
            dir.names.note(created, name);
        }
    }

    fn on_create(
        &mut self,
        path: PathBuf,
        is_dir: bool,
        now: Instant,
        moved_in: bool,
        cx: &mut Cx<'_>,
    ) {
        if self
            .synthesized
            .remove(&path)
            .is_some_and(|t| now - t < RECENT)
        {
            // Already reported from a scan of its new parent; but a directory on the way
            // to a target must still be followed from here.
            self.follow_if_on_the_way(&path, cx);
            return;
        }
        let key = recent::key(&path);
        self.recent_creates.insert(Arc::clone(&key), now);
        self.touched(key, cx);
        self.record(path.clone(), Kind::Create, None, now, cx);
        let followed = self.follow_if_on_the_way(&path, cx);
        if is_dir && !followed && self.in_tree(&path) {
            // A directory that appeared in a watched tree: armed, and what is already in it
            // (`mkdir -p a/b/c && touch a/b/c/f`, or a tree moved in) reported.
            // Moved in, it is one new entry; its contents are not news of their own.
            self.arm_and_report(&path, Depth::Tree, now, !moved_in, cx);
        }
    }

    fn on_rename(
        &mut self,
        from: PathBuf,
        to: PathBuf,
        is_dir: bool,
        now: Instant,
        cx: &mut Cx<'_>,
    ) {
        if is_dir {
            // Its descriptors (and those below) follow the directory to its new name.
            self.dirs.moved(&from, &to);
        }
        // Both sides may lie on the way to a target; each must be followed.
        self.follow_if_on_the_way(&from, cx);
        self.follow_if_on_the_way(&to, cx);
        let to_matches = self.is_reported(&to);
        let from_matches = self.is_reported(&from);
        let from_was_fresh = self.recent_creates.fresh(&from, now);
        if to_matches && (!from_matches || from_was_fresh) {
            // An editor's atomic save: a temp file written and renamed over the target.
            // What changed, for the user, is the target.
            self.pending.remove(&from);
            self.recent_creates.remove(&from);
            self.record(to, Kind::Modify, None, now, cx);
        } else if to_matches || from_matches {
            self.pending.remove(&from);
            self.record(to, Kind::Rename, Some(from), now, cx);
        }
    }

    /// The files the watch reports that exist now, in the directories it watches.
    pub fn present(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in self.dirs.by_path.keys() {
            let Ok(entries) = arm::read_dir(dir) else {
                continue;
            };
            for (name, is_dir) in entries {
                let p = dir.join(name);
                if !is_dir && self.is_reported(&p) {
                    out.push(p);
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    pub fn is_reported(&self, path: &Path) -> bool {
        self.targets
            .iter()
            .any(|t| t.matches(path, self.config.recursive))
            && !self.config.ignore.is_ignored(path)
    }

    /// Notes a change of a reported path, starting or joining its debounce window.
    fn record(
        &mut self,
        path: PathBuf,
        kind: Kind,
        old_path: Option<PathBuf>,
        now: Instant,
        cx: &mut Cx<'_>,
    ) {
        if !self.is_reported(&path) && !old_path.as_deref().is_some_and(|p| self.is_reported(p)) {
            return;
        }
        if self.config.debounce.is_zero() {
            self.emit(&path, kind, old_path, false, cx);
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

    fn emit(
        &mut self,
        path: &Path,
        kind: Kind,
        old_path: Option<PathBuf>,
        rescan: bool,
        cx: &mut Cx<'_>,
    ) {
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
        if rescan {
            fields.insert("rescan".into(), Value::from(true));
        }
        describe::describe_file(path, self.config.checksum, &mut fields);
        self.send(fields, cx);
    }

    fn send(&mut self, fields: Map<String, Value>, cx: &mut Cx<'_>) {
        cx.out.push_back((
            cx.id,
            Event::new(&self.name, "file", &self.host, true, fields),
        ));
    }
}
