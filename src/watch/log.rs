//! The `log` watch: lines appended to files, on the daemon's inotify thread. Which files,
//! and when they are created, written, renamed or deleted, is a file watch's business
//! (`FileState`, whose events this watch reads instead of the engine); this watch keeps a
//! reader per file and turns what is appended into one event per line.
//!
//! Positions: each event carries where its file is read to (device, inode, offset and a
//! hash of the file's first bytes, to tell a reused inode), which the daemon stores with
//! the rule states and deliveries the line led to, in one transaction. A file renamed away
//! (logrotate's `create`) is read to its end under a key of its own, for as long as its
//! writer appends to it; a file truncated under its reader (`copytruncate`) is read again
//! from its start.

mod follow;
mod lines;
mod position;

use self::position::{head_matches, head_of};
pub use self::position::{Position, Positions};

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use self::lines::Splitter;
use super::file::{FileState, FileWatchHandle};
use super::inotify::{Cx, Hosted, Raw};
use super::WatchError;
use crate::config::LogWatch;
use crate::event::{encode_os, Cursor, Event, Map, Mark, Value};

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

/// One open file.
struct Reader {
    file: File,
    path: PathBuf,
    key: Arc<str>,
    /// Its path as an event field.
    path_text: String,
    dev: u64,
    ino: u64,
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
}

pub struct LogState {
    name: Arc<str>,
    host: Arc<str>,
    config: LogWatch,
    files: FileState,
    /// The file watch's events, read here.
    local: VecDeque<(u64, Event)>,
    readers: HashMap<PathBuf, Reader>,
    /// Files renamed away or deleted, read while they are still written to.
    draining: Vec<Reader>,
    saved: Positions,
    next_drain: Option<Instant>,
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
        draining: Vec::new(),
        saved,
        next_drain: None,
        more: false,
        scheduled: None,
        buf: Vec::new(),
        locs: None,
        problems: Arc::clone(&problems),
    };
    let hub = hub
        .add(Hosted::Log(Box::new(state)))
        .map_err(|e| super::file::hub_error(&name, e))?;
    Ok(FileWatchHandle::new(hub, problems))
}

impl LogState {
    pub fn events(&self) -> &mpsc::Sender<Event> {
        self.files.events()
    }

    pub fn closed(&self) -> bool {
        self.files.closed()
    }

    pub fn close(&mut self) {
        self.files.close();
    }

    pub fn scheduled(&mut self) -> &mut Option<Instant> {
        &mut self.scheduled
    }

    pub fn has_more(&self) -> bool {
        self.more
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        match (self.files.next_wakeup(), self.next_drain) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn key(&self, path: &Path) -> String {
        format!("{}/{}", self.name, encode_os(path.as_os_str()))
    }

    /// Arms the file watch and opens what is there: where it was left when hark read it
    /// before, else at its end (or beginning, with `start = "beginning"`).
    pub fn arm(&mut self, cx: &mut Cx<'_>) {
        let mut local = std::mem::take(&mut self.local);
        self.files.arm(&mut cx.with_out(&mut local));
        local.clear();
        self.local = local;
        // Files renamed away while hark was stopped: read what they still had.
        let away: Vec<(String, Position)> = self
            .saved
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{}/", self.name)) && k.contains('@'))
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        let mut used = std::collections::HashSet::new();
        for path in self.files.present() {
            let key = self.key(&path);
            let saved = self.saved.get(&key).copied();
            used.insert(key);
            let start = if self.config.from_beginning {
                Start::Beginning
            } else {
                Start::End
            };
            self.open(&path, saved, start, cx);
        }
        for (key, pos) in away {
            self.reopen_renamed(&key, pos, cx);
        }
        // Files gone while hark was stopped: their positions go too.
        let prefix = format!("{}/", self.name);
        let stale: Vec<String> = self
            .saved
            .keys()
            .filter(|k| k.starts_with(&prefix) && !k.contains('@') && !used.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            self.send_cursor(Arc::from(key), None, cx);
        }
        self.saved.clear();
    }

    fn open(&mut self, path: &Path, saved: Option<Position>, start: Start, cx: &mut Cx<'_>) {
        let file = match crate::fsread::open_regular(path) {
            Ok(f) => f,
            Err(e) => {
                self.problem(format!("cannot read {path:?}: {e}"));
                return;
            }
        };
        let Ok(meta) = file.metadata() else { return };
        self.solved(path);
        let offset = match saved {
            Some(p)
                if p.dev == meta.dev() && p.ino == meta.ino() && head_matches(&file, p.head) =>
            {
                p.offset.min(meta.len())
            }
            // Rotated while hark was stopped: this file is new to hark.
            Some(_) => 0,
            None => match start {
                Start::Beginning => 0,
                Start::End => meta.len(),
            },
        };
        let key = self.key(path);
        let r = reader(file, path.to_path_buf(), Arc::from(key), offset);
        self.readers.insert(path.to_path_buf(), r);
        self.more = true;
        let _ = cx;
    }

    pub fn disarm(&mut self, cx: &mut Cx<'_>) {
        self.files.disarm(cx);
        self.readers.clear();
        self.draining.clear();
    }

    pub fn on_raw(&mut self, raw: &Raw, now: Instant, cx: &mut Cx<'_>) {
        let mut local = std::mem::take(&mut self.local);
        self.files.on_raw(raw, now, &mut cx.with_out(&mut local));
        self.follow(&mut local, cx);
        self.local = local;
    }

    pub fn flush_due(&mut self, now: Instant, cx: &mut Cx<'_>) {
        self.scheduled = None;
        let mut local = std::mem::take(&mut self.local);
        self.files.flush_due(now, &mut cx.with_out(&mut local));
        self.follow(&mut local, cx);
        self.local = local;
        if self.next_drain.is_some_and(|t| t <= now) {
            self.drain(now, cx);
        }
    }

    pub fn overflow(&mut self, cx: &mut Cx<'_>) {
        let mut local = std::mem::take(&mut self.local);
        self.files.overflow(&mut cx.with_out(&mut local));
        self.follow(&mut local, cx);
        self.local = local;
        // What was appended meanwhile is read from where each reader is.
        self.more = true;
    }

    /// Reads the files renamed away; lets go of those quiet for `QUIET`.
    fn drain(&mut self, now: Instant, cx: &mut Cx<'_>) {
        let mut keep = Vec::new();
        for mut r in std::mem::take(&mut self.draining) {
            let before = r.read_to;
            self.read(&mut r, cx, usize::MAX);
            if r.read_to != before {
                r.last_data = now;
            }
            if now - r.last_data < QUIET {
                keep.push(r);
            } else {
                self.send_cursor(Arc::clone(&r.key), None, cx);
            }
        }
        self.draining = keep;
        self.next_drain = (!self.draining.is_empty()).then(|| now + DRAIN_EVERY);
    }

    /// Reads what the open files have, as far as the engine has room.
    pub fn pump(&mut self, cx: &mut Cx<'_>) {
        let paths: Vec<PathBuf> = self.readers.keys().cloned().collect();
        let mut more = false;
        for p in paths {
            let Some(mut r) = self.readers.remove(&p) else {
                continue;
            };
            more |= self.read(&mut r, cx, PUMP_MAX);
            self.readers.insert(p, r);
        }
        self.more = more;
    }

    /// Reads `r` until its end or until `cx.out` holds `limit` events; whether it has
    /// more.
    fn read(&mut self, r: &mut Reader, cx: &mut Cx<'_>, limit: usize) -> bool {
        if !r.backlog {
            let Ok(meta) = r.file.metadata() else {
                return false;
            };
            // Truncated under its reader (copytruncate): shorter than what was read, or,
            // when the writer has already appended past that again, starting with other
            // bytes.
            let rewritten = r.head.1 > 0 && !head_matches(&r.file, r.head);
            if meta.len() < r.offset || rewritten {
                tracing::info!(watch = %self.name, path = ?r.path, "log file truncated: reading it again from its start");
                r.offset = 0;
                r.read_to = 0;
                r.split.reset();
                r.head = head_of(&r.file);
            }
            if r.head.1 < HEAD as u32 {
                r.head = head_of(&r.file);
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        let mut emitted_to = r.offset;
        let mut at_end = false;
        while cx.out.len() < limit {
            let n = match r.file.read_at(&mut buf, r.read_to) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(n) => n,
                Err(e) => {
                    self.problem(format!("cannot read {:?}: {e}", r.path));
                    at_end = true;
                    break;
                }
            };
            let mut at = r.offset;
            let mut lines = Vec::new();
            let (config, locs) = (&self.config, &mut self.locs);
            r.split.feed(&buf[..n], config.max_line, |line| {
                let start = at;
                at += line.consumed;
                if let Some(fields) = lines::fields(config, locs, &line) {
                    lines.push((start, at, fields));
                }
            });
            r.offset = at;
            r.read_to += n as u64;
            for (start, end, fields) in lines {
                self.send_line(r, start, end, fields, cx);
                emitted_to = end;
            }
        }
        self.buf = buf;
        if emitted_to < r.offset {
            // Lines no event was made of: only the position moves.
            let (key, pos) = (Arc::clone(&r.key), r.position());
            self.send_cursor(key, Some(pos), cx);
        }
        r.backlog = !at_end;
        r.backlog
    }

    fn send_line(
        &self,
        r: &Reader,
        start: u64,
        end: u64,
        mut fields: Map<String, Value>,
        cx: &mut Cx<'_>,
    ) {
        fields.insert("path".into(), Value::from(r.path_text.clone()));
        fields.insert("offset".into(), Value::from(start));
        let pos = Position {
            offset: end,
            ..r.position()
        };
        cx.out.push_back((
            cx.id,
            Event {
                watch: Arc::clone(&self.name),
                source: "log",
                time: SystemTime::now(),
                host: Arc::clone(&self.host),
                edge: true,
                fields,
                cursor: Some(Box::new(Cursor {
                    key: Arc::clone(&r.key),
                    value: Mark::File(pos),
                    only: false,
                })),
            },
        ));
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

#[derive(Clone, Copy)]
enum Start {
    Beginning,
    End,
}

fn reader(file: File, path: PathBuf, key: Arc<str>, offset: u64) -> Reader {
    let meta = file.metadata().ok();
    let head = head_of(&file);
    Reader {
        dev: meta.as_ref().map_or(0, |m| m.dev()),
        ino: meta.as_ref().map_or(0, |m| m.ino()),
        file,
        path_text: encode_os(path.as_os_str()),
        path,
        key,
        offset,
        read_to: offset,
        head,
        split: Splitter::default(),
        last_data: Instant::now(),
        backlog: false,
    }
}

impl Reader {
    fn position(&self) -> Position {
        Position {
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
            head: self.head,
        }
    }
}
