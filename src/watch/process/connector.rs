//! The netlink process connector: the kernel tells its listeners (root only, in the
//! initial network namespace) of every fork, exec and exit as it happens. An exec is a
//! program start, checked at once instead of at the next pass over /proc. Forks and exits
//! only say which pids the next pass must look at, so it need not list /proc: a fork
//! carries its parent's name until it execs (a shell forks for every command it runs), so
//! a fork is judged at the pass, as a listing would find it. The monitor trusts the
//! connector with that only once it has seen the fork and exit of a probe of its own
//! (`probe`): a socket outside the initial network or pid namespace would hear nothing or
//! other pids. Where the connector cannot be opened or is not trusted, each pass lists
//! /proc; a full socket buffer (events dropped) makes the next pass list it too.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDRLEN: usize = 16;
/// `struct cn_msg`: id (idx, val), seq, ack, len, flags.
const CN_MSG_LEN: usize = 20;
/// `struct proc_event` up to its data: what, cpu, timestamp_ns.
const PROC_EVENT_HDR: usize = 16;

/// The connector socket's receive buffer: about 80,000 exec events.
const RCVBUF: libc::c_int = 16 << 20;

/// Opens a non-blocking socket subscribed to process events.
pub fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A burst of process starts must not overflow the queue (what it drops is counted,
    // reported, and looked for by a pass at once). SO_RCVBUF is capped by
    // net.core.rmem_max (208 KiB by default, about 2,000 events); as root, SO_RCVBUFFORCE
    // is not.
    let size: libc::c_int = RCVBUF;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads `size` for its length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
    // SAFETY: a zeroed sockaddr_nl is valid; we set its family and group.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = CN_IDX_PROC;
    // SAFETY: bind reads `addr` for its length.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + CN_MSG_LEN + 4);
    let total = (NLMSG_HDRLEN + CN_MSG_LEN + 4) as u32;
    msg.extend_from_slice(&total.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&4u16.to_ne_bytes()); // len
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    // SAFETY: send reads `msg` for its length.
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Reads every message waiting on the socket; collects the forks, execs and exits.
/// `WouldBlock` ends it. Returns how often the kernel said it dropped events
/// (ENOBUFS: the buffer was full; how many it dropped, it does not say).
pub fn drain(fd: &OwnedFd, out: &mut Heard) -> io::Result<u64> {
    let mut buf = [0u8; 8192];
    let mut dropped = 0;
    loop {
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(dropped),
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    dropped += 1;
                    continue;
                }
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        parse(&buf[..n as usize], out);
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What the connector said since it was last read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// Processes that exec'd (thread group ids).
    pub execs: Vec<i32>,
    /// New processes (not threads), by fork.
    pub forks: Vec<i32>,
    /// Processes whose main thread ended.
    pub exits: Vec<i32>,
}

/// Parses one datagram (one netlink message carrying one process event).
pub fn parse(b: &[u8], out: &mut Heard) {
    let ev = NLMSG_HDRLEN + CN_MSG_LEN;
    let data = ev + PROC_EVENT_HDR;
    match u32_at(b, ev) {
        // exec: pid, tgid (the process).
        Some(PROC_EVENT_EXEC) => {
            if let Some(tgid) = i32_at(b, data + 4) {
                out.execs.push(tgid);
            }
        }
        // fork: parent pid, parent tgid, child pid, child tgid; a new thread has a child
        // pid other than its tgid.
        Some(PROC_EVENT_FORK) => {
            if let (Some(pid), Some(tgid)) = (i32_at(b, data + 8), i32_at(b, data + 12)) {
                if pid == tgid {
                    out.forks.push(pid);
                }
            }
        }
        // exit: pid, tgid, exit code, signal; only the main thread's end matters.
        Some(PROC_EVENT_EXIT) => {
            if let (Some(pid), Some(tgid)) = (i32_at(b, data), i32_at(b, data + 4)) {
                if pid == tgid {
                    out.exits.push(pid);
                }
            }
        }
        _ => {}
    }
}

/// Forks a child that exits at once and reaps it: its fork and exit, heard on the
/// connector under the pid fork returned, prove the connector hears this pid namespace.
/// `None` if the fork failed.
pub fn probe() -> Option<i32> {
    // SAFETY: the child only calls _exit, which is async-signal-safe, so forking a
    // multi-threaded process is sound here; the parent reaps its own child by pid.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(0);
        }
        if pid < 0 {
            return None;
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        Some(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(what: u32, data: &[i32]) -> Vec<u8> {
        let mut b = vec![0u8; NLMSG_HDRLEN + CN_MSG_LEN];
        b.extend_from_slice(&what.to_ne_bytes());
        b.extend_from_slice(&[0u8; 12]);
        for d in data {
            b.extend_from_slice(&d.to_ne_bytes());
        }
        b
    }

    #[test]
    fn execs_forks_and_exits_of_processes_are_taken_threads_not() {
        let mut out = Heard::default();
        // fork (0x1): parent pid, parent tgid, child pid, child tgid.
        parse(&event(0x1, &[1, 1, 200, 200]), &mut out);
        // A new thread of process 200.
        parse(&event(0x1, &[200, 200, 201, 200]), &mut out);
        parse(&event(PROC_EVENT_EXEC, &[301, 300]), &mut out);
        parse(&event(0x8000_0000, &[400, 400, 0, 9]), &mut out);
        // A thread of 400 ending.
        parse(&event(0x8000_0000, &[401, 400, 0, 0]), &mut out);
        // uid change (0x4), and garbage.
        parse(&event(0x4, &[500, 500, 0, 0]), &mut out);
        parse(&[1, 2, 3], &mut out);
        assert_eq!(
            out,
            Heard {
                execs: vec![300],
                forks: vec![200],
                exits: vec![400],
            }
        );
    }
}
