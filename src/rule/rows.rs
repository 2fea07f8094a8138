//! A rule's states as rows, for `hark status`, `hark explain` and the firing metric: one
//! per watch; with `group_by`, the firing groups and the most recently seen, not all of
//! them (a rule may hold `max_groups`, 10,000 by default).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::{Engine, Rule};

/// Firing groups shown per rule, the longest firing first.
pub(super) const SHOWN_FIRING: usize = 50;
/// Groups shown per rule beside the firing ones, the most recently seen first.
pub(super) const SHOWN_RECENT: usize = 5;

/// One state of a rule: a watch's, or a group's.
pub struct Row {
    /// None for a rule that has no state of its own yet (an event rule).
    pub watch: Option<Arc<str>>,
    pub group: Option<Arc<BTreeMap<String, String>>>,
    /// `ok`, `pending` or `firing`.
    pub state: &'static str,
    pub since: Option<Instant>,
    /// Counters and timers in words.
    pub notes: Vec<String>,
    /// When a match is due by, for a rule that expects one.
    pub due: Option<std::time::SystemTime>,
}

impl Rule {
    /// Its rows, as of `now`: its state mechanism's, then its edge mechanism's; a rule
    /// with none is one `ok` row with the edge gate's timers.
    pub(super) fn rows(&self, now: Instant) -> Vec<Row> {
        let mut out = Vec::new();
        self.states.rows(&self.head, now, &mut out);
        self.edges.rows(&self.head, now, &mut out);
        if out.is_empty() {
            out.push(Row {
                watch: None,
                group: None,
                state: "ok",
                since: None,
                notes: self.edges.idle_notes(&self.head, now),
                due: None,
            });
        }
        out
    }
}

impl Engine {
    /// For `hark_rule_firing`: how many states (watches, groups) of each rule and watch
    /// are firing now.
    pub fn firing_counts(&self) -> BTreeMap<(Arc<str>, Arc<str>), u64> {
        let mut out = BTreeMap::new();
        let mut by_watch = BTreeMap::new();
        for r in &self.rules {
            r.states.firing_counts(&mut by_watch);
            r.edges.firing_counts(&mut by_watch);
            for (watch, n) in std::mem::take(&mut by_watch) {
                *out.entry((Arc::clone(&r.head.name), watch)).or_default() += n;
            }
        }
        out
    }
}
