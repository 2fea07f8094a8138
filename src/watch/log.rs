//! The `log` watch: lines appended to files, on the daemon's inotify thread. Which files,
//! and when they are created, written, renamed or deleted, is a file watch's business
//! (`FileState`, whose events this watch reads instead of the engine); this watch keeps a
//! reader per file and turns what is appended into one event per line.
//!
//! Readers are keyed by what they read, device and inode, never by name: each reported
//! path is mapped to the inode it holds when looked at (whatever event brought the look,
//! in whatever order), so one file is never read twice, and a file renamed away
//! (logrotate's `create`) keeps its reader and position and is read to its end while its
//! writer appends to it. A file truncated under its reader (`copytruncate`) is read again
//! from its start. Descriptors are held only for files being read (see `fds`); reads are
//! bounded, so a file far behind never fills memory.
//!
//! Positions: each event carries where its file is read to (device, inode, offset and a
//! hash of the file's first bytes, to tell a reused inode), which the daemon stores with
//! the rule states and deliveries the line led to, in one transaction.

mod fds;
mod follow;
mod lines;
mod open;
mod position;
mod read;
mod restore;

pub use self::position::{Position, Positions};

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use self::lines::Splitter;
use super::file::{FileState, FileWatchHandle};
use super::inotify::{Cx, Raw};
use super::WatchError;
use crate::config::LogWatch;
use crate::event::{encode_os, Event, Mark};

/// A file as the kernel knows it: device and inode.
pub type Id = (u64, u64);

/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;
/// A file renamed away or deleted is read while its writer appends to it, until it has
/// been quiet this long.
const QUIET: Duration = Duration::from_secs(5);
/// Events a pump adds at most: the file thread hands them on before it reads more, so
/// a burst holds little in memory (the engine's queue holds the rest).
const PUMP_MAX: usize = 512;
/// How often such a file is looked at (it has no inotify event of its own any more).
const DRAIN_EVERY: Duration = Duration::from_millis(250);
/// The first bytes of a file that tell it from another on a reused inode.
const HEAD: usize = 256;
/// A file read to its end and quiet this long gives its descriptor back.
const IDLE: Duration = Duration::from_secs(10);
/// Files a watch keeps open however quiet they are: a few busy logs never reopen.
const KEEP_OPEN: usize = 16;
/// A watch that found no descriptor left tries again after this long.
const RETRY_FD: Duration = Duration::from_millis(100);

/// One file being followed.
struct Reader {
    /// Open while it is read; `None` once idle (opened again by its path when it changes).
    file: Option<fds::Held>,
    /// The reported path it is at, or was at before it was renamed away or deleted.
    path: PathBuf,
    key: Arc<str>,
    /// Its path as an event field.
    path_text: String,
    id: Id,
    /// The first byte not yet part of a complete line.
    offset: u64,
    /// What has been read past `offset`: a line without its newline yet.
    read_to: u64,
    head: (u64, u32),
    split: Splitter,
    last_data: Instant,
    /// The last read stopped for room, not at the end: the next goes on from there
    /// without looking at the file again (its size, its first bytes).
    backlog: bool,
    /// Reported paths that hold this file now; none: renamed away or deleted, read while
    /// its writer appends to it.
    links: u32,
    /// Not read before this file (the one it replaced while hark was stopped) has been
    /// read to its end.
    after: Option<Id>,
    /// Read to its end at least once.
    caught_up: bool,
    /// In the queue of files to read.
    queued: bool,
}

pub struct LogState {
    name: Arc<str>,
    host: Arc<str>,
    config: LogWatch,
    files: FileState,
    /// The file watch's events, read here.
    local: VecDeque<(u64, Event)>,
    readers: HashMap<Id, Reader>,
    /// Which file each reported path held when last looked at.
    at: HashMap<PathBuf, Id>,
    /// Files with something to read, in the order they were told of.
    ready: VecDeque<Id>,
    /// Files renamed away or deleted, read while still written to.
    away: Vec<Id>,
    /// Files waiting for a descriptor.
    starved: Vec<Id>,
    saved: Positions,
    next_drain: Option<Instant>,
    next_sweep: Option<Instant>,
    retry_fd: Option<Instant>,
    /// Readers of this watch holding a descriptor.
    open: usize,
    /// Already said that this watch waits for descriptors.
    said_starved: bool,
    more: bool,
    scheduled: Option<Instant>,
    /// What a read reads into.
    buf: Vec<u8>,
    /// Where `pattern`'s groups are found in a line.
    locs: Option<regex::CaptureLocations>,
    problems: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Hands the watch to the daemon's inotify thread, which arms it and opens its files
/// before this returns. Blocking: call it off the async runtime.
pub fn start(
    name: Arc<str>,
    host: Arc<str>,
    config: LogWatch,
    events: mpsc::Sender<Event>,
    hub: &super::inotify::Hub,
    saved: Positions,
) -> Result<FileWatchHandle, WatchError> {
    let files = FileState::new(
        Arc::clone(&name),
        Arc::clone(&host),
        config.files.clone(),
        events,
    );
    let problems = files.problems_handle();
    let state = LogState {
        name: Arc::clone(&name),
        host,
        config,
        files,
        local: VecDeque::new(),
        readers: HashMap::new(),
        at: HashMap::new(),
        ready: VecDeque::new(),
        away: Vec::new(),
        starved: Vec::new(),
        saved,
        next_drain: None,
        next_sweep: None,
        retry_fd: None,
        open: 0,
        said_starved: false,
        more: false,
        scheduled: None,
        buf: Vec::new(),
        locs: None,
        problems: Arc::clone(&problems),
    };
    let hub = hub
        .add(Box::new(state))
        .map_err(|e| super::file::hub_error(&name, e))?;
    Ok(FileWatchHandle::new(hub, problems))
}

impl super::inotify::Tenant for LogState {
    fn events(&self) -> &mpsc::Sender<Event> {
        self.files.events()
    }

    fn closed(&self) -> bool {
        self.files.closed()
    }

    fn close(&mut self) {
        self.files.close();
    }

    fn scheduled(&mut self) -> &mut Option<Instant> {
        &mut self.scheduled
    }

    fn has_more(&self) -> bool {
        self.more
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [
            self.files.next_wakeup(),
            self.next_drain,
            self.next_sweep,
            self.retry_fd,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Arms the file watch and takes up every file where hark left it (see `restore`).
    fn arm(&mut self, cx: &mut Cx<'_>) {
        let mut local = std::mem::take(&mut self.local);
        self.files.arm(&mut cx.with_out(&mut local));
        local.clear();
        self.local = local;
        self.restore(cx);
    }

    fn disarm(&mut self, cx: &mut Cx<'_>) {
        self.files.disarm(cx);
        self.readers.clear();
        self.at.clear();
        self.ready.clear();
        self.away.clear();
        self.starved.clear();
        self.open = 0;
    }

    fn on_raw(&mut self, raw: &Raw, now: Instant, cx: &mut Cx<'_>) {
        let mut local = std::mem::take(&mut self.local);
        self.files.on_raw(raw, now, &mut cx.with_out(&mut local));
        self.follow(&mut local, cx);
        self.local = local;
    }

    fn flush_due(&mut self, now: Instant, cx: &mut Cx<'_>) {
        self.scheduled = None;
        let mut local = std::mem::take(&mut self.local);
        self.files.flush_due(now, &mut cx.with_out(&mut local));
        self.follow(&mut local, cx);
        self.local = local;
        if self.next_drain.is_some_and(|t| t <= now) {
            self.drain(now, cx);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.sweep(now, false);
        }
        if self.retry_fd.is_some_and(|t| t <= now) {
            self.retry_fd = None;
            for id in std::mem::take(&mut self.starved) {
                self.wake(id);
            }
        }
    }

    fn overflow(&mut self, cx: &mut Cx<'_>) {
        let mut local = std::mem::take(&mut self.local);
        self.files.overflow(&mut cx.with_out(&mut local));
        self.follow(&mut local, cx);
        self.local = local;
        // What was appended meanwhile is read from where each reader is.
        let all: Vec<Id> = self.readers.keys().copied().collect();
        for id in all {
            self.wake(id);
        }
    }

    fn pump(&mut self, cx: &mut Cx<'_>) {
        LogState::pump(self, cx)
    }
}

impl LogState {
    fn key(&self, path: &Path) -> String {
        format!("{}/{}", self.name, encode_os(path.as_os_str()))
    }

    /// Puts a file in the queue of those to read.
    fn wake(&mut self, id: Id) {
        if let Some(r) = self.readers.get_mut(&id) {
            if !r.queued {
                r.queued = true;
                self.ready.push_back(id);
            }
            self.more = true;
        }
    }

    /// A new reader of the file `id` at `path`, from `offset` (its head, when known,
    /// tells a reused inode when it is opened), queued to be read.
    fn add_reader(&mut self, path: &Path, id: Id, offset: u64, head: (u64, u32)) {
        let key: Arc<str> = Arc::from(self.key(path));
        self.readers.insert(
            id,
            Reader {
                file: None,
                path_text: encode_os(path.as_os_str()),
                path: path.to_path_buf(),
                key,
                id,
                offset,
                read_to: offset,
                head,
                split: Splitter::default(),
                last_data: Instant::now(),
                backlog: false,
                links: 1,
                after: None,
                caught_up: false,
                queued: false,
            },
        );
        self.wake(id);
    }

    /// A position to store (or, `None`, to forget) with nothing to judge.
    fn send_cursor(&self, key: Arc<str>, pos: Option<Position>, cx: &mut Cx<'_>) {
        let mark = pos.map_or(Mark::Forget, Mark::File);
        let ev = Event::only_cursor(&self.name, "log", &self.host, key, mark);
        cx.out.push_back((cx.id, ev));
    }

    /// A file read again: what kept it from being read is no longer shown.
    fn solved(&self, path: &Path) {
        let about = format!("cannot read {path:?}: ");
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems.retain(|p| !p.starts_with(&about));
    }

    fn problem(&self, p: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < 100 && !problems.contains(&p) {
            tracing::warn!(watch = %self.name, "{p}");
            problems.push(p);
        }
    }
}

impl Reader {
    fn position(&self) -> Position {
        Position {
            dev: self.id.0,
            ino: self.id.1,
            offset: self.offset,
            head: self.head,
        }
    }
}
