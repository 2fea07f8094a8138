//! What the engine and a mechanism hand each other: an event as heard, a verdict, what a
//! tick came to, what became of a stored state.

use std::sync::Arc;
use std::time::Instant;

use super::head::Head;
use super::verdict::{RuleVerdict, TickNote};
use crate::event::{Event, Firing};

/// A mechanism's verdict on one event.
pub(super) struct Judged {
    pub verdict: RuleVerdict,
    pub firing: Option<Firing>,
    /// Store keys (after `rule/`) whose saved state changed.
    pub changed: Vec<Arc<str>>,
}

impl Judged {
    pub fn of(verdict: RuleVerdict) -> Judged {
        Judged {
            verdict,
            firing: None,
            changed: Vec::new(),
        }
    }
}

/// What the windows and deadlines that ended at a tick came to.
#[derive(Default)]
pub(super) struct Ticked {
    pub firings: Vec<Firing>,
    pub notes: Vec<TickNote>,
    /// Store keys (after `rule/`) whose saved state changed.
    pub changed: Vec<Arc<str>>,
}

/// An event as a mechanism hears it: whether the rule's condition matched it, which rule
/// of `unless` fires (if one does), and when.
pub(super) struct Heard<'a> {
    pub event: &'a Arc<Event>,
    pub matched: bool,
    pub quiet: Option<Arc<str>>,
    pub now: Instant,
}

impl Heard<'_> {
    /// For a mechanism of edge events: what an event comes to before it is counted; a
    /// non-match or a suppressed match comes to nothing more.
    pub fn edge_prelude(&mut self, head: &Head) -> Option<Judged> {
        if !self.matched {
            return Some(Judged::of(RuleVerdict::NoMatch));
        }
        let blocker = self.quiet.take()?;
        tracing::debug!(rule = %head.name, watch = %self.event.watch, blocker = %blocker, "matched; suppressed by `unless`");
        Some(Judged::of(RuleVerdict::Suppressed(blocker)))
    }
}

/// What became of a stored state offered to a mechanism.
pub(super) enum Restored {
    Taken,
    /// It belongs to no watch or group of this rule as configured now.
    Stale,
    Undecodable(String),
}

/// Groups held, dropped and refused for room (`max_groups`).
#[derive(Default, Clone, Copy)]
pub(super) struct GroupCount {
    pub held: usize,
    pub dropped: u64,
    pub refused: u64,
}
