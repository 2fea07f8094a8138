//! The engine's queue full: the hub's thread says it waits for room, and the engine,
//! having taken a batch from the queue, wakes it (`room_made`) instead of the thread
//! trying again and again. A profile of the log intake showed the thread spinning while
//! the engine was behind (poll, read and the clock in a loop): a third of hark's CPU.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

static WAITING: AtomicBool = AtomicBool::new(false);
static WAKE: Mutex<Option<Weak<OwnedFd>>> = Mutex::new(None);

/// The hub's eventfd, written when room is made.
pub(super) fn wake_with(fd: &Arc<OwnedFd>) {
    *WAKE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(fd));
}

/// The hub's thread found the queue full.
pub(super) fn waiting() {
    WAITING.store(true, Ordering::Release);
}

/// The engine took events from its queue: a hub thread waiting for room goes on.
pub fn room_made() {
    if WAITING.swap(false, Ordering::AcqRel) {
        let fd = WAKE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Weak::upgrade);
        if let Some(fd) = fd {
            super::wake(&fd);
        }
    }
}
