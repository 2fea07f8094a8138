//! Reading: which files are read in a round and how far (bounded, so a file far behind
//! never fills memory), the lines they give, and the descriptors they hold.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use super::position::{head_matches, head_of};
use super::{
    fds, lines, open, LogState, Position, Reader, CHUNK, HEAD, IDLE, KEEP_OPEN, PUMP_MAX, RETRY_FD,
};
use crate::event::{Event, Map, Mark, Value};
use crate::watch::inotify::Cx;

/// Whether a reader has its file open.
enum Opened {
    Yes,
    /// No descriptor left in the budget: it waits for one.
    Starved,
    /// Its path holds another file now, or nothing.
    Moved,
    /// It cannot be read (the problem is shown).
    Failed,
}

impl LogState {
    /// Reads what the queued files have, as far as the engine has room.
    pub fn pump(&mut self, cx: &mut Cx<'_>) {
        let rounds = self.ready.len();
        for _ in 0..rounds {
            if cx.out.len() >= PUMP_MAX {
                break;
            }
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(mut r) = self.readers.remove(&id) else {
                continue;
            };
            r.queued = false;
            if let Some(first) = r.after {
                // The file it replaced while hark was stopped is read first.
                if self
                    .readers
                    .get(&first)
                    .is_some_and(|f| !f.caught_up && f.queued)
                {
                    r.queued = true;
                    self.ready.push_back(id);
                    self.readers.insert(id, r);
                    continue;
                }
                r.after = None;
            }
            let (again, moved) = match self.ensure_open(&mut r) {
                Opened::Yes => (self.read(&mut r, cx, PUMP_MAX), false),
                Opened::Starved => {
                    self.starved.push(id);
                    (false, false)
                }
                Opened::Moved => (false, true),
                Opened::Failed => (false, false),
            };
            if again {
                r.queued = true;
                self.ready.push_back(id);
            }
            let path = r.path.clone();
            let renamed_away = r.links == 0;
            self.readers.insert(id, r);
            if moved {
                if renamed_away {
                    if let Some(r) = self.readers.remove(&id) {
                        self.forget_reader(&r, cx);
                    }
                } else {
                    // Closed while quiet, and its name holds another file now.
                    self.settle(&path, None, cx);
                }
            }
        }
        self.more = !self.ready.is_empty();
    }

    /// Opens a reader's file again if it was closed while quiet.
    fn ensure_open(&mut self, r: &mut Reader) -> Opened {
        if r.file.is_some() {
            return Opened::Yes;
        }
        if !self.take_fd() {
            return Opened::Starved;
        }
        match open::open(&r.path) {
            Ok(Some((file, id))) if id == r.id => {
                if !head_matches(&file, r.head) {
                    // The inode was freed and reused while hark held no descriptor.
                    tracing::info!(watch = %self.name, path = ?r.path, "log file replaced on the same inode: reading it from its start");
                    r.offset = 0;
                    r.read_to = 0;
                    r.split.reset();
                    r.head = head_of(&file);
                }
                r.file = Some(fds::Held::new(file));
                self.open += 1;
                if self.open > KEEP_OPEN && self.next_sweep.is_none() {
                    self.next_sweep = Some(Instant::now() + IDLE);
                }
                self.solved(&r.path);
                Opened::Yes
            }
            Ok(_) => {
                fds::give();
                Opened::Moved
            }
            Err(e) => {
                fds::give();
                self.problem(format!("cannot read {:?}: {e}", r.path));
                Opened::Failed
            }
        }
    }

    /// One descriptor for a log file, giving back this watch's quiet ones first when the
    /// budget is spent.
    fn take_fd(&mut self) -> bool {
        if fds::take() {
            return true;
        }
        self.sweep(Instant::now(), true);
        if fds::take() {
            return true;
        }
        if !self.said_starved {
            self.said_starved = true;
            tracing::warn!(
                watch = %self.name,
                files = self.readers.len(),
                open = self.open,
                log_files_open = fds::open(),
                budget = fds::budget(),
                "more log files to read than descriptors to read them with: they are read in turns (the open-files limit less a reserve for the listeners and actions; raise LimitNOFILE= to read more at once)"
            );
        }
        if self.retry_fd.is_none() {
            self.retry_fd = Some(Instant::now() + RETRY_FD);
        }
        false
    }

    /// Closes files read to their end: those quiet for `IDLE` (when the watch holds more
    /// than a few), or, `all`, every one not being read.
    pub(super) fn sweep(&mut self, now: Instant, all: bool) {
        if all || self.open > KEEP_OPEN {
            for r in self.readers.values_mut() {
                let quiet = all || now.saturating_duration_since(r.last_data) >= IDLE;
                if r.file.is_some() && r.links > 0 && !r.backlog && !r.queued && quiet {
                    r.file = None;
                    self.open -= 1;
                }
            }
        }
        self.next_sweep = (self.open > KEEP_OPEN).then(|| now + IDLE);
    }

    /// Reads `r` until its end or until `cx.out` holds `limit` events; whether it has
    /// more.
    fn read(&mut self, r: &mut Reader, cx: &mut Cx<'_>, limit: usize) -> bool {
        let Some(file) = r.file.as_deref() else {
            return false;
        };
        if !r.backlog {
            let Ok(meta) = file.metadata() else {
                return false;
            };
            // Truncated under its reader (copytruncate): shorter than what was read, or,
            // when the writer has already appended past that again, starting with other
            // bytes.
            let rewritten = r.head.1 > 0 && !head_matches(file, r.head);
            if meta.len() < r.offset || rewritten {
                tracing::info!(watch = %self.name, path = ?r.path, "log file truncated: reading it again from its start");
                r.offset = 0;
                r.read_to = 0;
                r.split.reset();
                r.head = head_of(file);
            }
            if r.head.1 < HEAD as u32 {
                r.head = head_of(file);
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        let mut emitted_to = r.offset;
        let mut at_end = false;
        let started = r.read_to;
        while cx.out.len() < limit {
            let n = match file.read_at(&mut buf, r.read_to) {
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
            let mut found = Vec::new();
            let (config, locs) = (&self.config, &mut self.locs);
            r.split.feed(&buf[..n], config.max_line, |line| {
                let start = at;
                at += line.consumed;
                if let Some(fields) = lines::fields(config, locs, &line) {
                    found.push((start, at, fields));
                }
            });
            r.offset = at;
            r.read_to += n as u64;
            for (start, end, fields) in found {
                self.send_line(r, start, end, fields, cx);
                emitted_to = end;
            }
        }
        self.buf = buf;
        if r.read_to != started {
            r.last_data = Instant::now();
        }
        if emitted_to < r.offset {
            // Lines no event was made of: only the position moves.
            let (key, pos) = (Arc::clone(&r.key), r.position());
            self.send_cursor(key, Some(pos), cx);
        }
        r.caught_up |= at_end;
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
            Event::new(&self.name, "log", &self.host, true, fields)
                .at(Arc::clone(&r.key), Mark::File(pos)),
        ));
    }
}
