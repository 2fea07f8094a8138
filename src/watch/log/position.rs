//! Where a log file is read to, and telling the file it was from another on a reused inode.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{reader, LogState, HEAD};
use crate::watch::inotify::Cx;

pub use crate::event::FilePosition as Position;

/// Positions from the store, by key (`watch/path`, or `watch/path@inode` for a file read
/// to its end after a rename), handed to the watch at its start.
pub type Positions = HashMap<String, Position>;

/// A hash of bytes that stays the same across runs.
pub(super) fn fingerprint(b: &[u8]) -> u64 {
    // FNV-1a: std's hasher is seeded per process.
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether the file starts with the bytes `head` was taken of (a file that grew since
/// still does).
pub(super) fn head_matches(file: &File, head: (u64, u32)) -> bool {
    let mut buf = vec![0u8; head.1 as usize];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    n == buf.len() && fingerprint(&buf) == head.0
}

pub(super) fn head_of(file: &File) -> (u64, u32) {
    let mut buf = [0u8; HEAD];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    (fingerprint(&buf[..n]), n as u32)
}

impl LogState {
    /// A file renamed away before a restart, found again by its inode in the directory
    /// of the path it had.
    pub(super) fn reopen_renamed(&mut self, key: &str, pos: Position, cx: &mut Cx<'_>) {
        let Some(path) = key
            .split_once('/')
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(p, _)| crate::event::decode_os(p))
        else {
            return;
        };
        let dir = Path::new(&path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                std::fs::metadata(p).is_ok_and(|m| m.ino() == pos.ino && m.dev() == pos.dev)
            })
        });
        match found.and_then(|p| File::open(&p).ok().map(|f| (p, f))) {
            Some((p, file)) if head_matches(&file, pos.head) => {
                let mut r = reader(file, p, Arc::from(key), pos.offset);
                r.last_data = Instant::now();
                self.draining.push(r);
                self.next_drain = Some(Instant::now());
            }
            // Gone, or another file now: nothing left to read; the key is dropped.
            _ => self.send_cursor(Arc::from(key), None, cx),
        }
    }
}
