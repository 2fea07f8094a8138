//! Paths remembered for a while, forgotten in the order they were noted: constant work per
//! path, however many a burst brings.
//!
//! Keyed by the path's bytes (`Key`), not by `Path`, whose hash walks its components: the
//! paths here are all made the same way (a directory's path joined with a name), and one
//! key is shared by the maps a created file is noted in (one allocation, not one each).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::RECENT;

/// At most this many paths are remembered as just created; past it, the oldest go first.
const RECENT_MAX: usize = 200_000;

/// Paths remembered as reported since the queue was last read empty, at most: past it, the
/// oldest go first.
const TOUCHED_MAX: usize = 1_000_000;

/// A path as the maps here hold it: its bytes.
pub(super) type Key = Arc<OsStr>;

pub(super) fn key(path: &Path) -> Key {
    Arc::from(path.as_os_str())
}

/// Paths seen recently, forgotten in the order they were noted: constant work per path.
#[derive(Default)]
pub(super) struct Recent {
    at: HashMap<Key, Instant>,
    order: VecDeque<(Instant, Key)>,
}

impl Recent {
    pub(super) fn insert(&mut self, p: Key, now: Instant) {
        self.at.insert(Arc::clone(&p), now);
        self.order.push_back((now, p));
        if self.order.len() > RECENT_MAX {
            self.expire_one();
        }
    }

    pub(super) fn fresh(&self, path: &Path, now: Instant) -> bool {
        self.at
            .get(path.as_os_str())
            .is_some_and(|t| now - *t < RECENT)
    }

    pub(super) fn remove(&mut self, path: &Path) -> Option<Instant> {
        self.at.remove(path.as_os_str())
    }

    pub(super) fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(t, _)| now - *t >= RECENT) {
            self.expire_one();
        }
    }

    fn expire_one(&mut self) {
        if let Some((t, p)) = self.order.pop_front() {
            if self.at.get(&p) == Some(&t) {
                self.at.remove(&p);
            }
        }
    }
}

/// Paths inotify reported, with when; those from before `keep_from` are forgotten, oldest
/// first (constant work per path).
#[derive(Default)]
pub(super) struct Touched {
    at: HashMap<Key, SystemTime>,
    order: VecDeque<(SystemTime, Key)>,
}

impl Touched {
    pub(super) fn insert(&mut self, p: Key, now: SystemTime, keep_from: SystemTime) {
        while self
            .order
            .front()
            .is_some_and(|(t, _)| *t < keep_from || self.order.len() >= TOUCHED_MAX)
        {
            if let Some((t, p)) = self.order.pop_front() {
                if self.at.get(&p) == Some(&t) {
                    self.at.remove(&p);
                }
            }
        }
        self.at.insert(Arc::clone(&p), now);
        self.order.push_back((now, p));
    }

    /// Whether inotify reported `path` at or after `since`.
    pub(super) fn since(&self, path: &Path, since: SystemTime) -> bool {
        self.at.get(path.as_os_str()).is_some_and(|t| *t >= since)
    }
}
