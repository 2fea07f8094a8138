//! What wakes the monitor between passes: a followed process's pidfd becoming readable
//! (it exited), and the process connector announcing a fork, an exec or an exit.

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{connector, procfs};

/// A followed process ended.
pub struct Exit {
    pub watch: u64,
    pub pid: i32,
    pub start_ticks: u64,
    /// Its wait status, when it could still be read from the zombie.
    pub status: Option<i32>,
}

/// What the connector heard, once it has something, and how often the kernel dropped
/// events meanwhile; never, without a connector.
pub async fn heard(
    connector: &Option<AsyncFd<OwnedFd>>,
) -> std::io::Result<(connector::Heard, u64)> {
    let Some(afd) = connector else {
        return std::future::pending().await;
    };
    let mut guard = afd.readable().await?;
    let mut heard = connector::Heard::default();
    let dropped = connector::drain(guard.get_inner(), &mut heard)?;
    // Read until it would block: wait for the next readiness.
    guard.clear_ready();
    Ok((heard, dropped))
}

/// Opens a pidfd for the process and waits, on the runtime, for it to become readable
/// (the process exited). `None` when pidfds are not available: the pass sees the exit.
pub fn follow_exit(
    watch: u64,
    pid: i32,
    start_ticks: u64,
    tx: mpsc::UnboundedSender<Exit>,
) -> Option<AbortHandle> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd moves into the AsyncFd and stays open, unchanged, for as long
    // as the AsyncFd lives; its raw fd is always the same.
    let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()?;
    let task = tokio::spawn(async move {
        // The pid may have been reused between the pass and pidfd_open: the fd is only
        // ours if the process still has the start time the pass saw.
        let same =
            procfs::read_stat(pid).is_ok_and(|s| s.start_ticks == start_ticks && !s.is_dead());
        if same {
            let _ = afd.readable().await;
        }
        let status = procfs::read_stat(pid)
            .ok()
            .filter(|s| s.start_ticks == start_ticks)
            .and_then(|s| s.exit_status);
        let _ = tx.send(Exit {
            watch,
            pid,
            start_ticks,
            status,
        });
    });
    Some(task.abort_handle())
}
