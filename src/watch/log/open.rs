//! Opening a log file that someone else may control. A regular file is opened without
//! following anything at its last step; a symbolic link is followed only where no one but
//! root (or hark's own user) could have put it there or could swap what it leads through:
//! the check logrotate makes before it rotates in a directory others can write. Anyone
//! who can write the log's directory could otherwise point `app.log` at root's files and
//! read them through hark's events, status and actions.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Id;
use crate::fsread::kind_name;

/// Links followed one after another at most (as the kernel's own limit).
const MAX_HOPS: usize = 40;

/// Why a log path is not read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file (it is {0})")]
    NotRegular(&'static str),
    /// A symbolic link where others than root could have made or changed it.
    #[error("not following the symbolic link {link:?}: {why}")]
    UnsafeLink { link: PathBuf, why: String },
}

/// A file a path leads to: which, and its length when looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub id: Id,
    pub len: u64,
}

/// What a path holds now, without opening it: `None` when nothing is there.
pub fn identify(path: &Path) -> Result<Option<Found>, OpenError> {
    match resolve(path)? {
        Some((_, m)) => {
            if !m.file_type().is_file() {
                return Err(OpenError::NotRegular(kind_name(&m.file_type())));
            }
            Ok(Some(Found {
                id: (m.dev(), m.ino()),
                len: m.len(),
            }))
        }
        None => Ok(None),
    }
}

/// The file at `path` itself (a link is not followed), if there is one.
pub fn identify_plain(path: &Path) -> Option<Id> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_file())
        .map(|m| (m.dev(), m.ino()))
}

/// Opens what `path` holds (non-blocking, never following a link that is not safe), and
/// says which file it is.
pub fn open(path: &Path) -> Result<Option<(File, Id)>, OpenError> {
    let Some((target, _)) = resolve(path)? else {
        return Ok(None);
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&target)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // Made a link between the look and the open: looked at again next time.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(OpenError::UnsafeLink {
                link: target,
                why: "it became a symbolic link while hark opened it".into(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let m = file.metadata()?;
    if !m.file_type().is_file() {
        return Err(OpenError::NotRegular(kind_name(&m.file_type())));
    }
    Ok(Some((file, (m.dev(), m.ino()))))
}

/// The path of the file `path` leads to, following only safe links, and what it is (one
/// `lstat` when `path` is no link); `None` when nothing is there (a dangling link too).
fn resolve(path: &Path) -> Result<Option<(PathBuf, std::fs::Metadata)>, OpenError> {
    let mut at = path.to_path_buf();
    for _ in 0..MAX_HOPS {
        let m = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !m.file_type().is_symlink() {
            return Ok(Some((at, m)));
        }
        if let Err(why) = link_is_safe(&at, &m) {
            return Err(OpenError::UnsafeLink { link: at, why });
        }
        let to = std::fs::read_link(&at)?;
        at = match at.parent() {
            Some(dir) if to.is_relative() => dir.join(to),
            _ => to,
        };
    }
    Err(OpenError::Io(std::io::Error::from_raw_os_error(
        libc::ELOOP,
    )))
}

/// Whether only root or hark's user could have made the link at `link` or can change it
/// or the directories above it.
fn link_is_safe(link: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let trusted = |uid: u32| uid == 0 || uid == me;
    let dir = link.parent().unwrap_or(Path::new("/"));
    // The directories the kernel walks to reach the link, its own links resolved.
    let dir = std::fs::canonicalize(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .map_err(|e| format!("its directory cannot be checked: {e}"))?;
    for d in dir.ancestors() {
        let m = std::fs::metadata(d).map_err(|e| format!("{d:?} cannot be checked: {e}"))?;
        let mode = m.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if !trusted(m.uid()) {
            return Err(format!("{d:?} belongs to uid {}", m.uid()));
        }
        // Group- or world-writable: others could rename or replace what is in it, unless
        // the sticky bit keeps them to their own entries (and the entry on the way, the
        // link or a directory, belongs to root or hark's user, checked above).
        if mode & 0o020 != 0 && m.gid() != 0 && !sticky {
            return Err(format!("{d:?} is writable by group {}", m.gid()));
        }
        if mode & 0o002 != 0 && !sticky {
            return Err(format!("{d:?} is writable by everyone"));
        }
    }
    // A sticky directory others write (/tmp): only a link of root's or hark's own.
    if !trusted(meta.uid()) {
        return Err(format!(
            "it belongs to uid {} in {dir:?}, a directory others can write",
            meta.uid()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_link_in_a_directory_others_can_write_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let open_dir = dir.path().join("logs");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only\n").unwrap();
        symlink(&secret, open_dir.join("app.log")).unwrap();
        let err = open(&open_dir.join("app.log")).unwrap_err();
        assert!(
            matches!(&err, OpenError::UnsafeLink { why, .. } if why.contains("writable by everyone")),
            "{err}"
        );
        // Made safe, the same link is followed.
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_, id) = open(&open_dir.join("app.log")).unwrap().unwrap();
        let m = std::fs::metadata(&secret).unwrap();
        assert_eq!(id, (m.dev(), m.ino()));
    }

    #[test]
    fn a_dangling_link_is_nothing_and_a_fifo_is_not_a_log() {
        let dir = tempfile::tempdir().unwrap();
        symlink(dir.path().join("nowhere"), dir.path().join("a.log")).unwrap();
        assert!(identify(&dir.path().join("a.log")).unwrap().is_none());
        assert!(identify_plain(&dir.path().join("a.log")).is_none());
        assert!(open(&dir.path().join("a.log")).unwrap().is_none());
        let fifo = std::ffi::CString::new(dir.path().join("f").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            open(&dir.path().join("f")),
            Err(OpenError::NotRegular("a FIFO"))
        ));
    }
}
