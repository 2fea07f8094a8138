//! How many files the log watches hold open at once. A descriptor is kept only for a file
//! being read (or one renamed away and drained); the others are known by their inode and
//! position and opened again when they change. Together the log watches never take more
//! than the open-files limit less a reserve, so the control socket, the HTTP listener,
//! actions and deliveries can always open what they need.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Kept for everything but log files: a quarter of the limit, at least this many.
const RESERVE: usize = 256;

static OPEN: AtomicUsize = AtomicUsize::new(0);
static BUDGET: OnceLock<usize> = OnceLock::new();

/// Descriptors all log watches may hold together: the soft open-files limit (raised to
/// the hard one at start) less a reserve.
pub fn budget() -> usize {
    *BUDGET.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we pass.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        let reserve = (soft / 4).max(RESERVE);
        soft.saturating_sub(reserve).max(16)
    })
}

/// Takes one descriptor of the budget, if there is one left.
pub fn take() -> bool {
    OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < budget()).then_some(n + 1)
    })
    .is_ok()
}

/// Takes one past the budget: for a file that cannot be opened later (renamed away).
pub fn force() {
    OPEN.fetch_add(1, Ordering::AcqRel);
}

/// Gives one back (a reader closed its file).
pub fn give() {
    let _ = OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// Descriptors the log watches hold now.
pub fn open() -> usize {
    OPEN.load(Ordering::Acquire)
}

/// An open log file, counted in the budget until it is dropped.
pub struct Held(std::fs::File);

impl Held {
    /// Counts `file`, taken with [`take`].
    pub fn new(file: std::fs::File) -> Held {
        Held(file)
    }
}

impl std::ops::Deref for Held {
    type Target = std::fs::File;
    fn deref(&self) -> &std::fs::File {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        give();
    }
}
