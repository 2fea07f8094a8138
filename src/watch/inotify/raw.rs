//! The inotify instance itself: its descriptor, who uses each watch descriptor, and the
//! raw events read from it.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What every watch descriptor is armed with.
pub const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_EXCL_UNLINK;

/// One raw event.
#[derive(Debug, Clone)]
pub struct Raw {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// The entry's name, for an event about an entry of the watched directory.
    pub name: Option<OsString>,
}

impl Raw {
    pub fn is(&self, bit: u32) -> bool {
        self.mask & bit != 0
    }
}

/// The instance's descriptor and who uses each of its watch descriptors.
pub struct Inotify {
    pub(super) fd: OwnedFd,
    /// Watches (by id) that asked for each watch descriptor.
    pub(super) users: HashMap<i32, Vec<u64>>,
}

impl Inotify {
    pub(super) fn new() -> io::Result<Inotify> {
        // SAFETY: plain inotify_init1; the fd is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Inotify {
            // SAFETY: the kernel just gave us this fd; nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            users: HashMap::new(),
        })
    }

    /// Arms `dir` for watch `id`; the same directory gives every watch the same
    /// descriptor.
    pub fn add(&mut self, dir: &Path, id: u64) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
        // SAFETY: a valid NUL-terminated path; the fd is ours.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        let users = self.users.entry(wd).or_default();
        if !users.contains(&id) {
            users.push(id);
        }
        Ok(wd)
    }

    /// Watch `id` no longer wants `wd`; the kernel's watch goes with its last user.
    pub fn remove(&mut self, wd: i32, id: u64) {
        let Some(users) = self.users.get_mut(&wd) else {
            return;
        };
        users.retain(|u| *u != id);
        if users.is_empty() {
            self.users.remove(&wd);
            // SAFETY: inotify_rm_watch on our fd; a stale wd is only an EINVAL.
            unsafe {
                libc::inotify_rm_watch(self.fd.as_raw_fd(), wd);
            }
        }
    }

    /// The kernel dropped `wd` (its directory is gone): nobody uses it any more.
    pub(super) fn forget(&mut self, wd: i32) {
        self.users.remove(&wd);
    }

    /// Watch descriptors in use, for `hark status` and tests.
    pub fn armed(&self) -> usize {
        self.users.len()
    }

    /// Reads what is waiting, without blocking.
    pub(super) fn read(&self, buf: &mut [u8], out: &mut Vec<Raw>) -> io::Result<()> {
        loop {
            // SAFETY: read writes at most buf.len() bytes into buf.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            parse(&buf[..n as usize], out);
            if out.len() >= READ_BATCH {
                return Ok(());
            }
        }
    }
}

/// Events read before they are handed to the watches.
pub(super) const READ_BATCH: usize = 4096;

/// Parses a buffer of `struct inotify_event`s.
pub fn parse(mut b: &[u8], out: &mut Vec<Raw>) {
    const HEAD: usize = 16;
    while b.len() >= HEAD {
        let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let (wd, mask, cookie, len) = (word(0) as i32, word(4), word(8), word(12) as usize);
        let Some(raw_name) = b.get(HEAD..HEAD + len) else {
            return;
        };
        let name = raw_name.split(|c| *c == 0).next().filter(|n| !n.is_empty());
        out.push(Raw {
            wd,
            mask,
            cookie,
            name: name.map(|n| OsStr::from_bytes(n).to_os_string()),
        });
        b = &b[HEAD + len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_with_and_without_names_parse() {
        let mut b = Vec::new();
        for (wd, mask, name) in [
            (1, libc::IN_CREATE, &b"a.txt"[..]),
            (2, libc::IN_DELETE_SELF, &b""[..]),
        ] {
            let len = if name.is_empty() { 0 } else { 16 };
            b.extend_from_slice(&(wd as u32).to_ne_bytes());
            b.extend_from_slice(&mask.to_ne_bytes());
            b.extend_from_slice(&7u32.to_ne_bytes());
            b.extend_from_slice(&(len as u32).to_ne_bytes());
            let mut padded = name.to_vec();
            padded.resize(len, 0);
            b.extend_from_slice(&padded);
        }
        let mut out = Vec::new();
        parse(&b, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name.as_deref(), Some(OsStr::new("a.txt")));
        assert!(out[1].name.is_none() && out[1].is(libc::IN_DELETE_SELF));
        // A truncated buffer stops, never reads past its end.
        let mut out = Vec::new();
        parse(&b[..20], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn one_directory_is_one_descriptor_shared_and_removed_with_its_last_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = Inotify::new().unwrap();
        let a = i.add(dir.path(), 1).unwrap();
        let b = i.add(dir.path(), 2).unwrap();
        assert_eq!(a, b);
        assert_eq!(i.armed(), 1);
        i.remove(a, 1);
        assert_eq!(i.armed(), 1);
        i.remove(a, 2);
        assert_eq!(i.armed(), 0);
    }
}
