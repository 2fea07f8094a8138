//! Which directories a file watch must have inotify watches on, and whether a path is one
//! it reports. Paths that do not exist yet are followed from their nearest existing parent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{FileWatch, PathPattern};

/// How a directory is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Depth {
    /// Its entries only.
    Shallow,
    /// Its whole tree, including subdirectories created later.
    Tree,
}

/// One `paths` entry and what is known of it on disk now.
#[derive(Debug, Clone)]
pub struct Target {
    pub pattern: PathPattern,
    /// An exact path that is a directory now: its entries are reported too.
    pub is_dir: bool,
    pub exists: bool,
}

impl Target {
    pub fn new(pattern: PathPattern) -> Self {
        Target {
            pattern,
            is_dir: false,
            exists: false,
        }
    }

    pub fn matches(&self, path: &Path, recursive: bool) -> bool {
        match &self.pattern.glob {
            Some(glob) => glob.is_match(path),
            None => {
                let base = &self.pattern.base;
                path == base
                    || (self.is_dir
                        && path.starts_with(base)
                        && (recursive || path.parent() == Some(base.as_path())))
            }
        }
    }

    /// Whether `path` lies on the way to this target's base (an ancestor, or the base itself):
    /// a change there moves where the target must be watched from.
    pub fn is_on_the_way(&self, path: &Path) -> bool {
        self.pattern.base.starts_with(path)
    }
}

/// The directories to watch now, each at the depth it needs.
pub fn plan(config: &FileWatch, targets: &mut [Target]) -> BTreeMap<PathBuf, Depth> {
    let mut want: BTreeMap<PathBuf, Depth> = BTreeMap::new();
    let mut add = |dir: PathBuf, depth: Depth| {
        let e = want.entry(dir).or_insert(depth);
        *e = (*e).max(depth);
    };
    for t in targets.iter_mut() {
        let base = t.pattern.base.clone();
        let meta = std::fs::metadata(&base).ok();
        t.exists = meta.is_some();
        t.is_dir = meta.as_ref().is_some_and(|m| m.is_dir()) && t.pattern.glob.is_none();
        let base_is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
        match (&t.pattern.glob, base_is_dir) {
            (Some(_), true) => add(
                base,
                if t.pattern.glob_recursive {
                    Depth::Tree
                } else {
                    Depth::Shallow
                },
            ),
            (None, true) => add(
                base,
                if config.recursive {
                    Depth::Tree
                } else {
                    Depth::Shallow
                },
            ),
            // A single file, or a path not there yet: watch the directory it would be in,
            // so the file can be deleted and created again (editors, logrotate).
            _ => {
                let parent = base.parent().map(Path::to_path_buf).unwrap_or(base);
                add(nearest_existing(&parent), Depth::Shallow);
            }
        }
    }
    want
}

fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path;
    loop {
        if p.is_dir() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return PathBuf::from("/"),
        }
    }
}

/// Every entry below `dir` (all levels for `Tree`), in the order a walk finds them.
/// Used for directories that appeared faster than their watch: what was created in
/// them before the watch existed is reported from here.
pub fn scan(dir: &Path, depth: Depth, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push(path.clone());
        if is_dir && depth == Depth::Tree {
            scan(&path, depth, out);
        }
    }
}
