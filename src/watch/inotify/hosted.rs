//! What lives on the inotify thread: the closed set of watches that read files, dispatched
//! by `match`.

use std::time::Instant;

use super::{Cx, Raw};
use crate::event::Event;
use crate::watch::file::FileState;
use crate::watch::log::LogState;

/// What lives on the inotify thread: the closed set of watches that read files.
pub enum Hosted {
    File(Box<FileState>),
    Log(Box<LogState>),
}

impl Hosted {
    pub(super) fn arm(&mut self, cx: &mut Cx<'_>) {
        match self {
            Hosted::File(f) => f.arm(cx),
            Hosted::Log(l) => l.arm(cx),
        }
    }

    pub(super) fn disarm(&mut self, cx: &mut Cx<'_>) {
        match self {
            Hosted::File(f) => f.disarm(cx),
            Hosted::Log(l) => l.disarm(cx),
        }
    }

    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        match self {
            Hosted::File(f) => f.next_wakeup(),
            Hosted::Log(l) => l.next_wakeup(),
        }
    }

    pub(super) fn on_raw(&mut self, raw: &Raw, now: Instant, cx: &mut Cx<'_>) {
        match self {
            Hosted::File(f) => f.on_raw(raw, now, cx),
            Hosted::Log(l) => l.on_raw(raw, now, cx),
        }
    }

    pub(super) fn flush_due(&mut self, now: Instant, cx: &mut Cx<'_>) {
        match self {
            Hosted::File(f) => f.flush_due(now, cx),
            Hosted::Log(l) => l.flush_due(now, cx),
        }
    }

    pub(super) fn overflow(&mut self, cx: &mut Cx<'_>) {
        match self {
            Hosted::File(f) => f.overflow(cx),
            Hosted::Log(l) => l.overflow(cx),
        }
    }

    /// Reads what a log watch still has to read, as far as the engine has room.
    pub(super) fn pump(&mut self, cx: &mut Cx<'_>) {
        if let Hosted::Log(l) = self {
            l.pump(cx);
        }
    }

    pub(super) fn has_more(&self) -> bool {
        matches!(self, Hosted::Log(l) if l.has_more())
    }

    pub(super) fn closed(&self) -> bool {
        match self {
            Hosted::File(f) => f.closed(),
            Hosted::Log(l) => l.closed(),
        }
    }

    pub(super) fn close(&mut self) {
        match self {
            Hosted::File(f) => f.close(),
            Hosted::Log(l) => l.close(),
        }
    }

    pub(super) fn events(&self) -> &tokio::sync::mpsc::Sender<Event> {
        match self {
            Hosted::File(f) => f.events(),
            Hosted::Log(l) => l.events(),
        }
    }

    pub(super) fn scheduled(&mut self) -> &mut Option<Instant> {
        match self {
            Hosted::File(f) => &mut f.scheduled,
            Hosted::Log(l) => l.scheduled(),
        }
    }
}
