//! Which directories one file watch has watch descriptors on, and arming them: a
//! directory, or a whole tree (walked without following symlinks, never down into a pseudo
//! file system such as /proc unless a path names it). What cannot be armed (a subtree it
//! may not read, the inotify watch limit) is a problem noted and said once, not a failure:
//! the watch keeps what it has.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::Names;
use super::paths::Depth;
use crate::watch::inotify::Inotify;

/// One watched directory.
pub struct Dir {
    pub path: Arc<Path>,
    pub depth: Depth,
    /// What it held, for overflow recovery.
    pub names: Names,
}

/// The watch descriptors of one watch.
#[derive(Default)]
pub struct Dirs {
    pub by_wd: HashMap<i32, Dir>,
    pub by_path: BTreeMap<Arc<Path>, i32>,
    /// What could not be armed, each said once; shared with the watch's handle, for
    /// `hark status`.
    pub problems: Arc<std::sync::Mutex<Vec<String>>>,
    /// The watch limit was hit: adding more would fail the same way.
    full: bool,
}

/// File systems that are not files: never descended into unless a path names them.
const PSEUDO: &[i64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0x6165_676c, // pstore
    0xcafe_4a11, // bpf
    0x6265_6570, // configfs
    0x6573_5543, // fusectl
    0x1cd1,      // devpts
    0x1980_0202, // mqueue
    0x4249_4e4d, // binfmt_misc
    0x0187,      // autofs: looking would mount
    0xde5e_81e4, // efivarfs
    0xf97c_ff8c, // selinuxfs
];

fn is_pseudo(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is valid; statfs writes into it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    PSEUDO.contains(&(st.f_type as i64))
}

impl Dirs {
    /// Arms `dir` (and, for `Tree`, every directory below it). Returns what each directory
    /// armed holds, for the caller to report when that is news.
    pub fn arm(
        &mut self,
        dir: &Path,
        depth: Depth,
        id: u64,
        inotify: &mut Inotify,
        mut found: Option<&mut Vec<PathBuf>>,
    ) {
        let root_dev = std::fs::metadata(dir).map(|m| m.dev()).ok();
        let mut todo: Vec<(PathBuf, Option<u64>)> = vec![(dir.to_path_buf(), root_dev)];
        while let Some((d, dev)) = todo.pop() {
            if self.full {
                return;
            }
            let wd = match inotify.add(&d, id) {
                Ok(wd) => wd,
                Err(e) => {
                    self.cannot(&d, &e, inotify);
                    continue;
                }
            };
            let entries = match read_dir(&d) {
                Ok(e) => e,
                Err(e) => {
                    self.cannot(&d, &e, inotify);
                    Vec::new()
                }
            };
            let names: Vec<OsString> = entries.iter().map(|(n, _)| n.clone()).collect();
            let path: Arc<Path> = Arc::from(d.as_path());
            if let Some(old) = self.by_wd.insert(
                wd,
                Dir {
                    path: Arc::clone(&path),
                    depth,
                    names: Names::read(&names),
                },
            ) {
                // The same directory under another name (a bind mount, a rename seen late).
                if old.path != path {
                    self.by_path.remove(&old.path);
                }
            }
            self.by_path.insert(path, wd);
            for (name, is_dir) in entries {
                let child = d.join(&name);
                if depth == Depth::Tree && is_dir {
                    let child_dev = std::fs::symlink_metadata(&child).map(|m| m.dev()).ok();
                    if child_dev != dev && is_pseudo(&child) {
                        continue;
                    }
                    todo.push((child.clone(), child_dev));
                }
                if let Some(f) = found.as_deref_mut() {
                    f.push(child);
                }
            }
        }
    }

    fn cannot(&mut self, dir: &Path, e: &std::io::Error, inotify: &Inotify) {
        match e.raw_os_error() {
            // Gone since it was seen: nothing to watch.
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            Some(libc::ENOSPC) => {
                self.full = true;
                let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                self.problem(format!(
                    "the inotify watch limit is reached at {dir:?} (fs.inotify.max_user_watches = {limit}; \
                     this watch has {} directories, hark {} in all): what is below is not watched; raise it, e.g. \
                     `sysctl fs.inotify.max_user_watches=1048576`",
                    self.by_wd.len(),
                    inotify.armed()
                ));
            }
            _ => self.problem(format!("cannot watch {dir:?}: {e} (skipped)")),
        }
    }

    fn problem(&mut self, p: String) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if problems.len() < 100 && !problems.contains(&p) {
            tracing::warn!("{p}");
            problems.push(p);
        }
    }

    /// Removes `dir` and every armed directory below it.
    pub fn disarm_under(&mut self, dir: &Path, id: u64, inotify: &mut Inotify) {
        let below: Vec<Arc<Path>> = self
            .by_path
            .range::<Path, _>((std::ops::Bound::Included(dir), std::ops::Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, _)| Arc::clone(p))
            .collect();
        for p in below {
            if let Some(wd) = self.by_path.remove(&p) {
                self.by_wd.remove(&wd);
                inotify.remove(wd, id);
            }
        }
    }

    /// A directory `plan` no longer asks for: with its tree when it was watched whole.
    pub fn disarm_under_root(&mut self, dir: &Path, depth: Depth, id: u64, inotify: &mut Inotify) {
        match depth {
            Depth::Tree => self.disarm_under(dir, id, inotify),
            Depth::Shallow => {
                if let Some(wd) = self.by_path.remove(dir) {
                    self.by_wd.remove(&wd);
                    inotify.remove(wd, id);
                }
            }
        }
    }

    /// A directory under watch moved from `from` to `to`: its descriptors (and those
    /// below) now name the new place.
    pub fn moved(&mut self, from: &Path, to: &Path) {
        let below: Vec<(Arc<Path>, i32)> = self
            .by_path
            .range::<Path, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(from))
            .map(|(p, wd)| (Arc::clone(p), *wd))
            .collect();
        for (old, wd) in below {
            self.by_path.remove(&old);
            let Ok(rest) = old.strip_prefix(from) else {
                continue;
            };
            let new: Arc<Path> = Arc::from(to.join(rest).as_path());
            if let Some(d) = self.by_wd.get_mut(&wd) {
                d.path = Arc::clone(&new);
            }
            self.by_path.insert(new, wd);
        }
    }

    /// The kernel dropped `wd`: its directory is gone.
    pub fn forget(&mut self, wd: i32) -> Option<Dir> {
        let d = self.by_wd.remove(&wd)?;
        if self.by_path.get(&d.path) == Some(&wd) {
            self.by_path.remove(&d.path);
        }
        Some(d)
    }

    /// Everything, at the watch's end.
    pub fn clear(&mut self, id: u64, inotify: &mut Inotify) {
        for wd in self.by_wd.keys() {
            inotify.remove(*wd, id);
        }
        self.by_wd.clear();
        self.by_path.clear();
        self.full = false;
    }

    pub fn is_tree(&self, wd: i32) -> bool {
        self.by_wd.get(&wd).is_some_and(|d| d.depth == Depth::Tree)
    }
}

/// A directory's entries: name, and whether it is a directory (not following symlinks).
pub fn read_dir(dir: &Path) -> std::io::Result<Vec<(OsString, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push((entry.file_name(), is_dir));
    }
    Ok(out)
}
