//! The raw queue between the notify callback and the watch's thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// Raw notifications waiting for the watch's thread. Past this, the callback reports an
/// overflow instead of blocking inotify's reader.
pub const RAW_QUEUE: usize = 16 * 1024;

pub enum Msg {
    Notify(notify::Result<notify::Event>),
    Stop,
}

/// The sending side of the raw queue: bounded by `RAW_QUEUE`, but holding memory only for
/// what is queued. (std's `sync_channel` allocates every slot up front: about 1.2 MB for
/// each watch, most of it never used.)
#[derive(Clone)]
pub struct RawSender {
    tx: Sender<Msg>,
    len: Arc<AtomicUsize>,
}

impl RawSender {
    /// Queues `msg` unless the queue is full; never blocks.
    pub fn try_send(&self, msg: Msg) -> bool {
        if self.len.fetch_add(1, Ordering::SeqCst) >= RAW_QUEUE {
            self.len.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        if self.tx.send(msg).is_err() {
            self.len.fetch_sub(1, Ordering::SeqCst);
        }
        true
    }
}

pub fn raw_queue() -> (RawSender, Receiver<Msg>, Arc<AtomicUsize>) {
    let (tx, rx) = channel();
    let len = Arc::new(AtomicUsize::new(0));
    (
        RawSender {
            tx,
            len: Arc::clone(&len),
        },
        rx,
        len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_queue_refuses_past_its_bound_and_takes_again_once_drained() {
        let (tx, rx, queued) = raw_queue();
        for _ in 0..RAW_QUEUE {
            assert!(tx.try_send(Msg::Stop));
        }
        assert!(!tx.try_send(Msg::Stop), "a full queue took one more");
        assert!(rx.recv().is_ok());
        queued.fetch_sub(1, Ordering::SeqCst);
        assert!(tx.try_send(Msg::Stop));
        assert!(!tx.try_send(Msg::Stop));
    }
}
