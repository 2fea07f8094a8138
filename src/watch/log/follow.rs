//! What the file watch reports (a log created, replaced, renamed, deleted), applied to
//! the readers of a log watch.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::position::head_matches;
use super::{LogState, Reader, Start, DRAIN_EVERY};
use crate::event::{encode_os, Event, Value};
use crate::watch::inotify::Cx;

impl LogState {
    /// What the file watch saw, applied to the readers.
    pub(super) fn follow(&mut self, local: &mut VecDeque<(u64, Event)>, cx: &mut Cx<'_>) {
        for (_, ev) in local.drain(..) {
            let kind = ev.kind().unwrap_or("").to_string();
            let path = |k: &str| {
                ev.fields
                    .get(k)
                    .and_then(Value::as_str)
                    .map(|s| PathBuf::from(crate::event::decode_os(s)))
            };
            let Some(p) = path("path") else { continue };
            match kind.as_str() {
                "create" | "modify" => {
                    let same = self.readers.get(&p).is_some_and(|r| {
                        std::fs::metadata(&p).is_ok_and(|m| m.ino() == r.ino && m.dev() == r.dev)
                    });
                    if !same {
                        if let Some(old) = self.readers.remove(&p) {
                            self.retire(old, cx);
                        }
                        // New to hark: read from its beginning.
                        self.open(&p, None, Start::Beginning, cx);
                    }
                    self.more = true;
                }
                "delete" => {
                    // A delete reported late, once a file made anew at the path is being
                    // read, is not about that file: same inode and same first bytes.
                    let now_there = crate::fsread::open_regular(&p);
                    let current = self.readers.get(&p).is_some_and(|r| {
                        now_there.as_ref().is_ok_and(|f| {
                            f.metadata()
                                .is_ok_and(|m| m.ino() == r.ino && m.dev() == r.dev)
                                && head_matches(f, r.head)
                        })
                    });
                    if !current {
                        if let Some(old) = self.readers.remove(&p) {
                            self.retire(old, cx);
                        }
                        // Something else already in its place (a directory, a FIFO): the
                        // file watch may report no create for it, so it is named here.
                        if let Err(e @ crate::fsread::ReadError::NotRegular(_)) = now_there {
                            self.problem(format!("cannot read {p:?}: {e}"));
                        }
                    }
                }
                "rename" => {
                    let from = path("old_path");
                    if let Some(r) = from.and_then(|f| self.readers.remove(&f)) {
                        if self.files.is_reported(&p) {
                            // Still a file this watch reads, under its new name.
                            let mut r = r;
                            self.send_cursor(Arc::clone(&r.key), None, cx);
                            r.key = Arc::from(self.key(&p));
                            r.path_text = encode_os(p.as_os_str());
                            r.path = p.clone();
                            self.readers.insert(p, r);
                            self.more = true;
                        } else {
                            self.retire(r, cx);
                        }
                    } else if self.files.is_reported(&p) && !self.readers.contains_key(&p) {
                        self.open(&p, None, Start::Beginning, cx);
                    }
                }
                // The file watch's overflow: what changed is reported next, as events.
                _ => {}
            }
        }
    }

    /// A file renamed away or deleted: read on, under a key of its own, while written to.
    fn retire(&mut self, mut r: Reader, cx: &mut Cx<'_>) {
        let renamed = Arc::from(format!("{}@{}", r.key, r.ino));
        let old_key = std::mem::replace(&mut r.key, renamed);
        self.send_cursor(old_key, None, cx);
        r.last_data = Instant::now();
        self.send_cursor(Arc::clone(&r.key), Some(r.position()), cx);
        self.draining.push(r);
        self.next_drain = Some(Instant::now() + DRAIN_EVERY);
        self.more = true;
    }
}
