//! What the file watch reports (a log created, written, renamed, deleted), applied to the
//! readers of a log watch. An event only says which paths to look at again: what a path
//! holds is read from the file system when it is looked at, so events that arrive late
//! or out of order (a write reported after the rename that followed it) cannot make two
//! readers of one file or retire the reader of the file that is still there.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{fds, open, Id, LogState, Reader, DRAIN_EVERY, QUIET};
use crate::event::{encode_os, Event, Value};
use crate::watch::inotify::Cx;

impl LogState {
    /// What the file watch saw, applied to the readers.
    pub(super) fn follow(&mut self, local: &mut VecDeque<(u64, Event)>, cx: &mut Cx<'_>) {
        for (_, ev) in local.drain(..) {
            let path = |k: &str| {
                ev.fields
                    .get(k)
                    .and_then(Value::as_str)
                    .map(|s| PathBuf::from(crate::event::decode_os(s)))
            };
            let Some(p) = path("path") else { continue };
            // The new name first: a file renamed within what is read keeps its reader.
            self.settle(&p, None, cx);
            if let Some(from) = path("old_path") {
                self.settle(&from, Some(&p), cx);
            }
        }
    }

    /// Looks at what `p` holds now and brings the readers in line: a file new to hark is
    /// read from its beginning, one hark reads already is read on, one no longer under
    /// any reported name is read to its end while written to. `moved_to` is where the
    /// file at `p` was renamed, when the event said so.
    pub(super) fn settle(&mut self, p: &Path, moved_to: Option<&Path>, cx: &mut Cx<'_>) {
        let now = if self.files.is_reported(p) {
            match open::identify(p) {
                Ok(found) => {
                    if found.is_some() {
                        self.solved(p);
                    }
                    found
                }
                Err(e) => {
                    self.problem(format!("cannot read {p:?}: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let before = self.at.get(p).copied();
        if before == now.map(|f| f.id) {
            if let Some(id) = before {
                self.wake(id);
            }
            return;
        }
        if let Some(old) = before {
            self.at.remove(p);
            self.unlink(old, p, moved_to, now.is_some(), cx);
        }
        let Some(found) = now else { return };
        self.at.insert(p.to_path_buf(), found.id);
        match self.readers.get_mut(&found.id) {
            Some(r) => {
                r.links += 1;
                if r.links == 1 {
                    // Renamed away, and back under a name this watch reads.
                    self.away.retain(|i| *i != found.id);
                    self.rekey(found.id, p, cx);
                }
                self.wake(found.id);
            }
            None => {
                // New to hark: read from its beginning.
                self.add_reader(p, found.id, 0, super::position::EMPTY_HEAD);
                self.store_position(found.id, cx);
            }
        }
    }

    /// `p` no longer holds the file `id` (`replaced`: it holds another one now).
    fn unlink(
        &mut self,
        id: Id,
        p: &Path,
        moved_to: Option<&Path>,
        replaced: bool,
        cx: &mut Cx<'_>,
    ) {
        let Some(r) = self.readers.get_mut(&id) else {
            return;
        };
        r.links = r.links.saturating_sub(1);
        if r.links == 0 {
            self.retire(id, moved_to, replaced, cx);
        } else if r.path == p {
            // Another reported name holds it still (a hard link): its key moves there.
            let other = self
                .at
                .iter()
                .find(|(_, v)| **v == id)
                .map(|(k, _)| k.clone());
            if let Some(other) = other {
                self.rekey(id, &other, cx);
            }
        }
    }

    /// A file renamed away or deleted: read on, under a key of its own, while written to.
    /// `replaced`: its name holds another file now (a rotation), so it may be in the
    /// directory under another name.
    fn retire(&mut self, id: Id, moved_to: Option<&Path>, replaced: bool, cx: &mut Cx<'_>) {
        let Some(mut r) = self.readers.remove(&id) else {
            return;
        };
        if r.file.is_none() {
            // Closed while it was quiet: found again by its inode where it went. The
            // directory is searched only after a rotation: a plain delete (its name left
            // empty) of each of 10,000 quiet files must not read the directory each time.
            let dir = r.path.parent().map(Path::to_path_buf).unwrap_or_default();
            let found = moved_to
                .filter(|m| open::identify_plain(m) == Some(id))
                .map(Path::to_path_buf)
                .or_else(|| {
                    replaced
                        .then(|| super::restore::find_in_dir(&dir, id))
                        .flatten()
                });
            match found.and_then(|f| self.open_as(&f, id)) {
                Some(file) => {
                    r.file = Some(file);
                    self.open += 1;
                }
                None => {
                    self.forget_reader(&r, cx);
                    return;
                }
            }
        }
        r.key = Arc::from(format!("{}@{}", r.key, r.id.1));
        r.last_data = Instant::now();
        self.readers.insert(id, r);
        self.store_position(id, cx);
        self.away.push(id);
        if self.next_drain.is_none() {
            self.next_drain = Some(Instant::now() + DRAIN_EVERY);
        }
        self.wake(id);
    }

    /// The reader of `id` is known under the reported name `p` from now on.
    fn rekey(&mut self, id: Id, p: &Path, cx: &mut Cx<'_>) {
        let key: Arc<str> = Arc::from(self.key(p));
        let Some(r) = self.readers.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut r.key, key);
        r.path = p.to_path_buf();
        r.path_text = encode_os(p.as_os_str());
        self.send_cursor(old, None, cx);
        self.store_position(id, cx);
    }

    /// Stores where the reader of `id` is, under its key.
    pub(super) fn store_position(&self, id: Id, cx: &mut Cx<'_>) {
        if let Some(r) = self.readers.get(&id) {
            self.send_cursor(Arc::clone(&r.key), Some(r.position()), cx);
        }
    }

    /// A reader let go: its position goes, and its name's too when no file holds it.
    pub(super) fn forget_reader(&self, r: &Reader, cx: &mut Cx<'_>) {
        self.send_cursor(Arc::clone(&r.key), None, cx);
        let home = self.key(&r.path);
        if *r.key != *home && !self.at.contains_key(&r.path) {
            self.send_cursor(Arc::from(home), None, cx);
        }
    }

    /// Opens `path`, if it still is the file `id`, with a descriptor of the budget.
    pub(super) fn open_as(&mut self, path: &Path, id: Id) -> Option<fds::Held> {
        // A file renamed away is read whatever the budget: it cannot be opened later.
        let counted = fds::take();
        match open::open(path) {
            Ok(Some((file, got))) if got == id => {
                if !counted {
                    fds::force();
                }
                Some(fds::Held::new(file))
            }
            _ => {
                if counted {
                    fds::give();
                }
                None
            }
        }
    }

    /// Reads the files renamed away; lets go of those quiet for `QUIET`.
    pub(super) fn drain(&mut self, now: Instant, cx: &mut Cx<'_>) {
        let mut keep = Vec::new();
        for id in std::mem::take(&mut self.away) {
            let Some(r) = self.readers.get(&id) else {
                continue;
            };
            if r.links > 0 {
                continue;
            }
            if !r.backlog && !r.queued && now - r.last_data >= QUIET {
                if let Some(r) = self.readers.remove(&id) {
                    if r.file.is_some() {
                        self.open -= 1;
                    }
                    self.forget_reader(&r, cx);
                }
                continue;
            }
            keep.push(id);
            self.wake(id);
        }
        self.away = keep;
        self.next_drain = (!self.away.is_empty()).then(|| now + DRAIN_EVERY);
    }
}
