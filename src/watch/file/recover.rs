//! After the kernel's queue overflowed: the `overflow` event, then each entry created,
//! deleted or modified while events were lost, as ordinary events with `rescan = true`,
//! each once. What each directory held is known from its `index::Names`; what changed is
//! read from the directory now; a file whose inode changed (ctime) since hark last had
//! read the whole queue was modified. Reading directories and stat-ing files raise no
//! inotify event (hark does not subscribe to opens), so recovering never feeds the queue
//! it recovers from.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::arm::read_dir;
use super::index::diff;
use super::paths::Depth;
use super::recent;
use super::{FileState, Kind};
use crate::event::{encode_os, Map, Value};
use crate::watch::inotify::Cx;

/// A file's ctime this close before the queue was last read empty counts as after it:
/// file system timestamps are coarser than the clock.
pub(super) const CTIME_SLACK: Duration = Duration::from_millis(20);

impl FileState {
    /// The kernel's queue overflowed. `cx.drained` is when hark last read it empty: every
    /// change before that was reported.
    pub fn overflow(&mut self, cx: &mut Cx<'_>) {
        let since = cx.drained;
        tracing::warn!(watch = %self.name, "the kernel's inotify queue overflowed: changes were lost; reporting an overflow and what changed meanwhile");
        crate::metrics::get().file_overflows.inc();
        let path = self
            .targets
            .first()
            .map(|t| t.pattern.base.clone())
            .unwrap_or_default();
        let mut fields = Map::new();
        fields.insert("kind".into(), Value::from("overflow"));
        fields.insert("path".into(), Value::from(encode_os(path.as_os_str())));
        self.send(fields, cx);
        let started = Instant::now();
        // Targets that appeared or went away meanwhile.
        self.rearm(super::Arm::Follow, cx);
        let since = since.checked_sub(CTIME_SLACK).unwrap_or(since);
        let dirs: Vec<(i32, Arc<Path>, Depth)> = self
            .dirs
            .by_wd
            .iter()
            .map(|(wd, d)| (*wd, Arc::clone(&d.path), d.depth))
            .collect();
        let mut reported = 0usize;
        for (wd, dir, depth) in dirs {
            reported += self.recover_dir(wd, &dir, depth, since, cx);
        }
        tracing::info!(
            watch = %self.name,
            reported,
            took_ms = started.elapsed().as_millis() as u64,
            "after the overflow: changes made meanwhile reported"
        );
    }

    /// What changed in one directory; returns how many events it made.
    fn recover_dir(
        &mut self,
        wd: i32,
        dir: &Path,
        depth: Depth,
        since: SystemTime,
        cx: &mut Cx<'_>,
    ) -> usize {
        let Some(known) = self.dirs.by_wd.get(&wd).map(|d| d.names.known()) else {
            return 0;
        };
        let Ok(entries) = read_dir(dir) else {
            // Gone: its own parent's diff reports it; the kernel drops its descriptor.
            return 0;
        };
        let names: Vec<_> = entries.iter().map(|(n, _)| n.clone()).collect();
        let d = diff(known, &names);
        if let Some(dir_entry) = self.dirs.by_wd.get_mut(&wd) {
            dir_entry.names.reset(names.iter().map(|n| n.as_bytes()));
        }
        let now = Instant::now();
        let mut n = 0;
        for name in &d.deleted {
            let p = dir.join(name);
            if self.dirs.by_path.contains_key(p.as_path()) {
                self.dirs.disarm_under(&p, cx.id, cx.inotify);
            }
            n += self.rescanned(p, Kind::Delete, now, cx);
        }
        for name in &d.created {
            let p = dir.join(name);
            let is_dir = entries.iter().any(|(e, d)| e == name && *d);
            n += self.rescanned(p.clone(), Kind::Create, now, cx);
            if is_dir && depth == Depth::Tree {
                // A directory made while events were lost: armed, and all in it is new.
                let mut found = Vec::new();
                self.dirs
                    .arm(&p, Depth::Tree, cx.id, cx.inotify, Some(&mut found));
                for f in found {
                    n += self.rescanned(f, Kind::Create, now, cx);
                }
            }
        }
        for name in &d.kept {
            let p = dir.join(name);
            // Created or modified since the queue was last read empty, and reported by
            // inotify: not news. (A second change of such a file among what was lost is not
            // told apart from the first.)
            if self.touched.since(&p, since) {
                continue;
            }
            let changed = std::fs::symlink_metadata(&p)
                .is_ok_and(|m| !m.is_dir() && ctime(&m).is_some_and(|c| c >= since));
            if changed {
                n += self.rescanned(p, Kind::Modify, now, cx);
            }
        }
        n
    }

    /// Reports one recovered change at once (no debounce: its window is long over), and
    /// remembers a create so inotify's own report, if it comes later, is not a second one.
    fn rescanned(&mut self, path: PathBuf, kind: Kind, now: Instant, cx: &mut Cx<'_>) -> usize {
        if !self.is_reported(&path) {
            return 0;
        }
        if kind == Kind::Create {
            if self.recent_creates.fresh(&path, now) {
                return 0;
            }
            let key = recent::key(&path);
            self.synthesized.insert(Arc::clone(&key), now);
            self.recent_creates.insert(key, now);
        }
        self.pending.remove(&path);
        self.emit(&path, kind, None, true, cx);
        1
    }
}

fn ctime(m: &std::fs::Metadata) -> Option<SystemTime> {
    let secs = u64::try_from(m.ctime()).ok()?;
    let nanos = u32::try_from(m.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}
