//! Where a log file is read to, and telling the file it was from another on a reused inode.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::HEAD;

pub use crate::event::FilePosition as Position;

/// Positions from the store, by key (`watch/path`, or `watch/path@inode` for a file read
/// to its end after a rename), handed to the watch at its start.
pub type Positions = HashMap<String, Position>;

/// The head of a file whose first bytes hark has not read yet: any file matches it.
pub const EMPTY_HEAD: (u64, u32) = (FNV_BASIS, 0);

const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// A hash of bytes that stays the same across runs.
pub(super) fn fingerprint(b: &[u8]) -> u64 {
    // FNV-1a: std's hasher is seeded per process.
    b.iter().fold(FNV_BASIS, |h, x| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_head_matches_any_file_and_a_head_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "first line\n").unwrap();
        let f = File::open(&p).unwrap();
        assert!(head_matches(&f, EMPTY_HEAD));
        let head = head_of(&f);
        assert!(head_matches(&f, head));
        std::fs::write(&p, "other line\n").unwrap();
        assert!(!head_matches(&File::open(&p).unwrap(), head));
    }
}
