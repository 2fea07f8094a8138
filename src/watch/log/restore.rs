//! Taking up where hark left off, when a log watch starts (the daemon's start, a reload).
//! Each stored position names a file by device and inode: a file still under its name is
//! read on from there; one rotated while hark was stopped is found by its inode in the
//! same directory (`app.log.1`, a dated name) and read to its end before the file that
//! took its name; one that is gone (compressed, deleted) is said so, with what may have
//! been missed.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::position::head_matches;
use super::{open, Id, LogState, Position};
use crate::event::decode_os;
use crate::watch::inotify::Cx;

/// Where a file was left, taken from the furthest of the keys that name it.
struct Left {
    path: PathBuf,
    pos: Position,
    /// Stored under its name (not as a file renamed away).
    named: bool,
}

impl LogState {
    pub(super) fn restore(&mut self, cx: &mut Cx<'_>) {
        let saved = std::mem::take(&mut self.saved);
        // A watch that stored positions before has run before: a file it does not know
        // appeared since, and is read from its beginning, whatever `start` says.
        let ran_before = !saved.is_empty();
        let mut lens: HashMap<Id, u64> = HashMap::new();
        for p in self.files.present() {
            match open::identify(&p) {
                Ok(Some(found)) => {
                    self.at.insert(p, found.id);
                    lens.insert(found.id, found.len);
                }
                Ok(None) => {}
                Err(e) => self.problem(format!("cannot read {p:?}: {e}")),
            }
        }
        let mut left: HashMap<Id, Left> = HashMap::new();
        for (key, pos) in &saved {
            let Some((path, named)) = self.path_of_key(key, pos) else {
                continue;
            };
            let here = Left {
                path,
                pos: *pos,
                named,
            };
            let id = (pos.dev, pos.ino);
            match left.get(&id) {
                Some(l) if l.pos.offset >= pos.offset => {}
                _ => {
                    left.insert(id, here);
                }
            }
        }
        let mut keep: HashSet<String> = HashSet::new();
        let holders: HashMap<Id, PathBuf> =
            self.at.iter().map(|(p, id)| (*id, p.clone())).collect();
        let mut replaced: HashMap<PathBuf, Id> = HashMap::new();
        for (id, l) in left {
            if let Some(p) = holders.get(&id) {
                // Still under a name this watch reads.
                let len = lens.get(&id).copied().unwrap_or(u64::MAX);
                self.add_reader(p, id, l.pos.offset.min(len), l.pos.head);
                keep.insert(self.key(p));
                continue;
            }
            let dir = l.path.parent().map(Path::to_path_buf).unwrap_or_default();
            let found = find_in_dir(&dir, id).and_then(|f| {
                let file = self.open_as(&f, id)?;
                head_matches(&file, l.pos.head).then_some(file)
            });
            match found {
                Some(file) => {
                    // Rotated while hark was stopped: read to its end, then the new file.
                    self.add_reader(&l.path, id, l.pos.offset, l.pos.head);
                    self.open += 1;
                    let key: Arc<str> = Arc::from(format!("{}@{}", self.key(&l.path), id.1));
                    if let Some(r) = self.readers.get_mut(&id) {
                        r.file = Some(file);
                        r.links = 0;
                        r.key = key;
                        keep.insert(r.key.to_string());
                    }
                    self.store_position(id, cx);
                    self.away.push(id);
                    self.next_drain = Some(std::time::Instant::now());
                    replaced.insert(l.path.clone(), id);
                }
                None if l.named => self.missed(&l.path, &dir, l.pos),
                None => {}
            }
        }
        let present: Vec<(PathBuf, Id)> = self.at.iter().map(|(p, id)| (p.clone(), *id)).collect();
        for (p, id) in present {
            if let Some(r) = self.readers.get_mut(&id) {
                if r.links > 0 && r.path != p {
                    r.links += 1;
                }
                continue;
            }
            let offset = if ran_before || self.config.from_beginning {
                0
            } else {
                lens.get(&id).copied().unwrap_or(0)
            };
            self.add_reader(&p, id, offset, super::position::EMPTY_HEAD);
            if let Some(r) = self.readers.get_mut(&id) {
                r.after = replaced.get(&p).copied();
            }
            keep.insert(self.key(&p));
            self.store_position(id, cx);
        }
        for key in saved.into_keys() {
            if !keep.contains(&key) {
                self.send_cursor(Arc::from(key), None, cx);
            }
        }
    }

    /// The path a stored key names, and whether it names the file under its name (not
    /// renamed away: `watch/path@inode`).
    fn path_of_key(&self, key: &str, pos: &Position) -> Option<(PathBuf, bool)> {
        let rest = key.strip_prefix(&*self.name)?.strip_prefix('/')?;
        let ino = pos.ino.to_string();
        match rest.rsplit_once('@') {
            Some((p, i)) if i == ino => Some((PathBuf::from(decode_os(p)), false)),
            _ => Some((PathBuf::from(decode_os(rest)), true)),
        }
    }

    /// The file hark was reading at `path` is gone since it stopped.
    fn missed(&self, path: &Path, dir: &Path, pos: Position) {
        let compressed = compressed_copy(dir, path);
        let what = match &compressed {
            Some((gz, size)) if *size >= pos.offset => format!(
                "{} bytes past byte {} were not read (per its compressed copy {gz:?}, which hark cannot read)",
                size - pos.offset,
                pos.offset
            ),
            _ => format!(
                "whatever it had past byte {} was not read (compressed or deleted)",
                pos.offset
            ),
        };
        tracing::warn!(
            watch = %self.name,
            path = ?path,
            inode = pos.ino,
            "the log file hark was reading was rotated away while hark was stopped and is no longer in {dir:?}: {what}"
        );
    }
}

/// The entry of `dir` that is the file `id` (by the inode in the directory entry, so a
/// directory of thousands of files costs no `stat` each).
pub(super) fn find_in_dir(dir: &Path, id: Id) -> Option<PathBuf> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.ino() == id.1)
        .map(|e| e.path())
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.dev() == id.0))
}

/// The newest gzip file in `dir` whose name starts with `path`'s, and the size of what
/// it holds (its trailer's ISIZE: the uncompressed size modulo 4 GiB).
fn compressed_copy(dir: &Path, path: &Path) -> Option<(PathBuf, u64)> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&name) && n.ends_with(".gz")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()?
        .1;
    let mut f = crate::fsread::open_regular(&newest).ok()?;
    f.seek(SeekFrom::End(-4)).ok()?;
    let mut isize = [0u8; 4];
    f.read_exact(&mut isize).ok()?;
    Some((newest, u64::from(u32::from_le_bytes(isize))))
}
