//! The store's file as something else may touch it: the directory is locked (a second
//! daemon is refused even if the file was deleted), the file's header is checked before
//! redb reads it, and before each write the file is checked to be the one hark wrote last
//! (same inode, size and modification time, and redb's header still in place). What someone
//! else did to it is repaired rather than written into:
//! - deleted or replaced: written again from hark's own open copy, nothing lost;
//! - truncated or written to: set aside as `state.redb.damaged-SECONDS`, a new file made,
//!   and the daemon saves again what it holds (rule states, silences).
//!
//! What cannot be seen this way: a truncation in the middle of hark's own write, after which
//! that write puts redb's header back (redb writes it last). The file then looks like hark's.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The first bytes of every redb file.
const MAGIC: &[u8] = b"redb\x1A\x0A\xA9\x0D\x0A";

/// What the file was after hark's last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    ino: u64,
    dev: u64,
    size: u64,
    mtime_ns: i128,
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Identity {
        Identity {
            ino: m.ino(),
            dev: m.dev(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// What became of the file since hark last wrote it.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Unchanged,
    /// Unlinked or replaced by another file; hark's copy is intact.
    Gone,
    /// Truncated or written to by something else.
    Damaged,
}

/// Holds the lock on the directory and an open handle on the file.
pub struct Guard {
    _dir_lock: File,
    own: Option<File>,
    last: Option<Identity>,
}

/// Locks `dir` for this process: a second daemon on the same `state_dir` is refused
/// whatever became of the file in it.
pub fn lock_dir(dir: &Path) -> std::io::Result<File> {
    let d = File::open(dir)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(d.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(d)
}

/// Refuses a file redb would misread: one that has bytes but not redb's header.
pub fn check_header(path: &Path) -> Result<(), String> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len == 0 {
        return Ok(());
    }
    let mut head = [0u8; HEADER_FIELDS];
    if len < HEADER_FIELDS as u64 || f.read_exact(&mut head).is_err() || !head.starts_with(MAGIC) {
        return Err(format!(
            "damaged: {len} bytes without the header of a redb database (truncated or overwritten?)"
        ));
    }
    match layout_len(&head) {
        Some(want) if len >= want => Ok(()),
        // redb asserts the file holds what its header describes, and an assertion would
        // take the daemon down at every start (a crash loop under Restart=on-failure).
        Some(want) => Err(format!(
            "damaged: cut short at {len} bytes where its header describes {want} (truncated?)"
        )),
        None => Err(format!(
            "damaged: the header of a redb database that describes no valid layout ({len} bytes)"
        )),
    }
}

/// Bytes of redb's header that describe the file's layout (redb 2's format: page size,
/// region header pages, region data pages, full regions, trailing region's data pages, as
/// little-endian u32 from byte 12).
const HEADER_FIELDS: usize = 32;

/// How long a file redb's header describes must be at least: one page for the header,
/// the full regions and the trailing one.
fn layout_len(head: &[u8; HEADER_FIELDS]) -> Option<u64> {
    let field = |at: usize| {
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(|b: [u8; 4]| u64::from(u32::from_le_bytes(b)))
    };
    let (page, header_pages, data_pages) = (field(12)?, field(16)?, field(20)?);
    let (full, trailing) = (field(24)?, field(28)?);
    if !page.is_power_of_two() || !(512..=1 << 20).contains(&page) || full + trailing == 0 {
        return None;
    }
    let region = (header_pages + data_pages).checked_mul(page)?;
    let mut want = page.checked_add(full.checked_mul(region)?)?;
    if trailing > 0 {
        want = want.checked_add((header_pages + trailing).checked_mul(page)?)?;
    }
    Some(want)
}

impl Guard {
    pub fn new(dir_lock: File) -> Guard {
        Guard {
            _dir_lock: dir_lock,
            own: None,
            last: None,
        }
    }

    /// Takes a handle on the file as it is now (after opening it, or after a write).
    pub fn record(&mut self, path: &Path) {
        if self.own.is_none() {
            self.own = File::open(path).ok();
        }
        self.last = self
            .own
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| Identity::of(&m));
    }

    /// Forgets the handle: the file is about to be set aside or replaced.
    pub fn release(&mut self) {
        self.own = None;
        self.last = None;
    }

    /// Whether the file is still the one hark wrote last.
    pub fn check(&self, path: &Path) -> Found {
        let (Some(own), Some(last)) = (&self.own, self.last) else {
            return Found::Unchanged;
        };
        let now = own.metadata().map(|m| Identity::of(&m)).ok();
        // The header too: a truncation during hark's last write is recorded as hark's own
        // size and time, but leaves the file without it.
        let mut head = [0u8; MAGIC.len()];
        if now != Some(last) || own.read_exact_at(&mut head, 0).is_err() || head != MAGIC {
            return Found::Damaged;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.ino() == last.ino && m.dev() == last.dev => Found::Unchanged,
            _ => Found::Gone,
        }
    }

    /// Writes hark's own copy to `path` again (through a temporary file and a rename, so
    /// a crash meanwhile leaves no half file); a file found in its place is set aside.
    pub fn restore(&mut self, path: &Path) -> std::io::Result<Option<PathBuf>> {
        let Some(own) = self.own.as_mut() else {
            return Err(std::io::Error::other("no open copy to restore from"));
        };
        let tmp = path.with_extension("redb.restoring");
        {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            own.seek(SeekFrom::Start(0))?;
            std::io::copy(own, &mut out)?;
            out.flush()?;
            out.sync_all()?;
        }
        let aside = if path.exists() {
            let a = set_aside(path, "replaced")?;
            Some(a)
        } else {
            None
        };
        std::fs::rename(&tmp, path)?;
        self.release();
        Ok(aside)
    }
}

/// Renames `path` to `path.WHY-SECONDS`; returns the new name.
pub fn set_aside(path: &Path, why: &str) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{why}-{secs}"));
    let to = PathBuf::from(name);
    std::fs::rename(path, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_the_header_is_refused_and_an_empty_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.redb");
        assert!(check_header(&p).is_ok());
        std::fs::write(&p, b"").unwrap();
        assert!(check_header(&p).is_ok());
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        assert!(check_header(&p).unwrap_err().contains("damaged"));
    }

    #[test]
    fn a_database_cut_short_with_its_header_intact_is_refused_before_redb_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.redb");
        {
            let db = redb::Database::create(&p).unwrap();
            let table: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("t");
            let w = db.begin_write().unwrap();
            w.open_table(table).unwrap().insert("k", "v").unwrap();
            w.commit().unwrap();
        }
        assert!(check_header(&p).is_ok(), "{:?}", check_header(&p));
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(4096).unwrap();
        let err = check_header(&p).unwrap_err();
        assert!(err.contains("cut short at 4096 bytes"), "{err}");
    }

    #[test]
    fn the_directory_lock_refuses_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _a = lock_dir(dir.path()).unwrap();
        assert!(lock_dir(dir.path()).is_err());
    }

    #[test]
    fn deletion_truncation_and_replacement_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // Only the magic is looked at here, not the layout (see `check_header`).
        std::fs::write(&p, [MAGIC, b"hello"].concat()).unwrap();
        let mut g = Guard::new(lock_dir(dir.path()).unwrap());
        g.record(&p);
        assert_eq!(g.check(&p), Found::Unchanged);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(g.check(&p), Found::Gone);
        assert!(g.restore(&p).unwrap().is_none());
        assert_eq!(std::fs::read(&p).unwrap(), [MAGIC, b"hello"].concat());
        g.record(&p);
        assert_eq!(g.check(&p), Found::Unchanged);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(g.check(&p), Found::Damaged);
        // Truncated during hark's own write: what hark records after it is the cut file,
        // which still lacks redb's header.
        g.record(&p);
        assert_eq!(g.check(&p), Found::Damaged);
    }
}
