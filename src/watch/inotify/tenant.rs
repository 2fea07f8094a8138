//! What lives on the inotify thread: a watch that reads files (the file and log watches),
//! as the thread sees it. The thread knows no watch type; each implements this.

use std::time::Instant;

use super::{Cx, Raw};
use crate::event::Event;

pub trait Tenant: Send {
    /// Arms its watch descriptors (on the inotify thread).
    fn arm(&mut self, cx: &mut Cx<'_>);
    /// Removes every watch descriptor (the watch is stopping).
    fn disarm(&mut self, cx: &mut Cx<'_>);
    /// When it next has work of its own (a debounce window, a retry).
    fn next_wakeup(&self) -> Option<Instant>;
    /// One raw event on one of its descriptors.
    fn on_raw(&mut self, raw: &Raw, now: Instant, cx: &mut Cx<'_>);
    /// The work that was due by `now`.
    fn flush_due(&mut self, now: Instant, cx: &mut Cx<'_>);
    /// The kernel's queue overflowed: events were lost, look again.
    fn overflow(&mut self, cx: &mut Cx<'_>);
    /// Reads what it still has to read, as far as the engine has room.
    fn pump(&mut self, _cx: &mut Cx<'_>) {}
    /// Whether it has more to read than the engine took.
    fn has_more(&self) -> bool {
        false
    }
    /// The engine is gone: nothing more to do.
    fn closed(&self) -> bool;
    fn close(&mut self);
    /// Where its events go.
    fn events(&self) -> &tokio::sync::mpsc::Sender<Event>;
    /// The deadline the thread has it down for.
    fn scheduled(&mut self) -> &mut Option<Instant>;
}
