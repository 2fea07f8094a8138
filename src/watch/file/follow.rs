//! Following the paths a file watch names: arming the directories `plan` asks for as
//! they appear and go, and reporting what a scan finds in a directory armed late.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::paths::{self, plan, Depth};
use super::recent;
use super::{Arm, FileState, Kind, MAX_REARM_ROUNDS};
use crate::watch::inotify::Cx;

impl FileState {
    /// Whether `path` lies inside a directory watched with its whole tree.
    pub(super) fn in_tree(&self, path: &Path) -> bool {
        path.parent()
            .and_then(|p| self.dirs.by_path.get(p))
            .is_some_and(|wd| self.dirs.is_tree(*wd))
    }

    /// Arms `dir` and reports as created what is in it, unless inotify already did, and
    /// remembers it so the same create arriving from inotify later is not reported twice.
    pub(super) fn arm_and_report(
        &mut self,
        dir: &Path,
        depth: Depth,
        now: Instant,
        report: bool,
        cx: &mut Cx<'_>,
    ) {
        let mut found = Vec::new();
        self.dirs
            .arm(dir, depth, cx.id, cx.inotify, Some(&mut found));
        if report {
            self.found_created(found, now, cx);
        }
    }

    /// Reports paths a scan found as created, unless inotify already did, and remembers
    /// them so the same create arriving from inotify later is not reported twice.
    pub(super) fn found_created(
        &mut self,
        found: impl IntoIterator<Item = PathBuf>,
        now: Instant,
        cx: &mut Cx<'_>,
    ) {
        for p in found {
            if self.recent_creates.fresh(&p, now) {
                continue;
            }
            let key = recent::key(&p);
            self.synthesized.insert(Arc::clone(&key), now);
            self.recent_creates.insert(key, now);
            self.record(p, Kind::Create, None, now, cx);
        }
    }

    /// A change on the way to a target that is not there yet (or just went away) moves
    /// where it must be watched from. Returns whether anything was re-armed.
    pub(super) fn follow_if_on_the_way(&mut self, path: &Path, cx: &mut Cx<'_>) -> bool {
        if !self.targets.iter().any(|t| t.is_on_the_way(path)) {
            return false;
        }
        self.rearm(Arm::Follow, cx);
        true
    }

    pub(super) fn rearm(&mut self, why: Arm, cx: &mut Cx<'_>) {
        let existed: Vec<bool> = self.targets.iter().map(|t| t.exists).collect();
        let mut newly = Vec::new();
        // A directory can appear between looking and watching, and then no event would
        // ever tell us; so look again after watching, until what is watched is what
        // exists. Each round goes at least one level deeper, so this ends.
        for _ in 0..MAX_REARM_ROUNDS {
            let want = plan(&self.config, &mut self.targets);
            if want == self.roots {
                break;
            }
            for (dir, depth) in &self.roots {
                if want.get(dir) != Some(depth) {
                    self.dirs.disarm_under_root(dir, *depth, cx.id, cx.inotify);
                }
            }
            for (dir, depth) in &want {
                if self.roots.get(dir) != Some(depth) {
                    newly.push((dir.clone(), *depth));
                }
            }
            for (dir, depth) in &newly {
                if !self.dirs.by_path.contains_key(dir.as_path()) || *depth == Depth::Tree {
                    self.dirs.arm(dir, *depth, cx.id, cx.inotify, None);
                }
            }
            tracing::debug!(watch = %self.name, dirs = ?want, "watching");
            self.roots = want;
        }
        if why != Arm::Follow {
            return;
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
        self.found_created(appeared, now, cx);
        for (dir, depth) in newly {
            let mut found = Vec::new();
            paths::scan(&dir, depth, &mut found);
            self.found_created(found, now, cx);
        }
    }
}
