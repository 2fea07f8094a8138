//! The file watch on the inotify thread: armed, fed raw events and deadlines, disarmed.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::*;
use crate::event::Event;
use crate::watch::inotify::{Cx, Raw, Tenant};

impl Tenant for FileState {
    fn events(&self) -> &mpsc::Sender<Event> {
        &self.events
    }

    fn closed(&self) -> bool {
        self.closed
    }

    /// Arms every directory the watch needs (on the inotify thread).
    fn arm(&mut self, cx: &mut Cx<'_>) {
        self.rearm(Arm::Initial, cx);
    }

    /// Removes every watch descriptor (the watch is stopping).
    fn disarm(&mut self, cx: &mut Cx<'_>) {
        self.dirs.clear(cx.id, cx.inotify);
        self.roots.clear();
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let debounce = self.deadlines.front().map(|(t, _)| *t);
        let rename = self.rename_order.front().map(|(t, _)| *t + RENAME_PAIRING);
        match (debounce, rename) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One raw event on one of this watch's descriptors.
    fn on_raw(&mut self, raw: &Raw, now: Instant, cx: &mut Cx<'_>) {
        let Some(dir) = self.dirs.by_wd.get(&raw.wd) else {
            return;
        };
        let dir_path = Arc::clone(&dir.path);
        let is_dir = raw.is(libc::IN_ISDIR);
        let Some(name) = raw.name.as_deref() else {
            // About the watched directory itself.
            if raw.is(libc::IN_IGNORED) {
                self.dirs.forget(raw.wd);
            } else if raw.is(libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_UNMOUNT) {
                let p = dir_path.to_path_buf();
                if self.roots.contains_key(&p) {
                    self.follow_if_on_the_way(&p, cx);
                    self.record(p, Kind::Delete, None, now, cx);
                }
            } else if raw.is(libc::IN_ATTRIB) && self.roots.contains_key(&*dir_path) {
                self.record(dir_path.to_path_buf(), Kind::Modify, None, now, cx);
            }
            return;
        };
        // Made to its length at once (`join` grows it once more).
        let mut path = PathBuf::with_capacity(dir_path.as_os_str().len() + 1 + name.len());
        path.push(&*dir_path);
        path.push(name);
        if raw.is(libc::IN_CREATE) {
            self.note(raw.wd, true, name);
            self.on_create(path, is_dir, now, false, cx);
        } else if raw.is(libc::IN_DELETE) {
            self.note(raw.wd, false, name);
            self.follow_if_on_the_way(&path, cx);
            self.record(path, Kind::Delete, None, now, cx);
        } else if raw.is(libc::IN_MOVED_FROM) {
            self.note(raw.wd, false, name);
            self.renames.insert(raw.cookie, (path, now));
            self.rename_order.push_back((now, raw.cookie));
        } else if raw.is(libc::IN_MOVED_TO) {
            self.note(raw.wd, true, name);
            match self.renames.remove(&raw.cookie) {
                Some((from, _)) => self.on_rename(from, path, is_dir, now, cx),
                // Moved in from outside what is watched: new here.
                None => self.on_create(path, is_dir, now, true, cx),
            }
        } else if raw.is(libc::IN_MODIFY | libc::IN_ATTRIB) {
            self.touched(recent::key(&path), cx);
            self.record(path, Kind::Modify, None, now, cx);
        }
    }

    /// Ends the debounce windows and rename pairings that are due.
    fn flush_due(&mut self, now: Instant, cx: &mut Cx<'_>) {
        self.scheduled = None;
        while self.deadlines.front().is_some_and(|(at, _)| *at <= now) {
            let Some((at, path)) = self.deadlines.pop_front() else {
                break;
            };
            if self.pending.get(&path).is_some_and(|p| p.deadline == at) {
                if let Some(p) = self.pending.remove(&path) {
                    self.emit(&path, p.kind, p.old_path, false, cx);
                }
            }
        }
        // Halves of renames that found no partner moved out of what is watched.
        while self
            .rename_order
            .front()
            .is_some_and(|(t, _)| now - *t >= RENAME_PAIRING)
        {
            let Some((_, cookie)) = self.rename_order.pop_front() else {
                break;
            };
            if let Some((p, _)) = self.renames.remove(&cookie) {
                // A directory moved out takes its descriptors with it: they are not ours.
                self.dirs.disarm_under(&p, cx.id, cx.inotify);
                self.follow_if_on_the_way(&p, cx);
                self.record(p, Kind::Delete, None, now, cx);
            }
        }
        self.recent_creates.expire(now);
        self.synthesized.expire(now);
    }

    /// The engine is gone.
    fn close(&mut self) {
        self.closed = true;
    }

    fn overflow(&mut self, cx: &mut Cx<'_>) {
        FileState::overflow(self, cx)
    }

    fn scheduled(&mut self) -> &mut Option<Instant> {
        &mut self.scheduled
    }
}
