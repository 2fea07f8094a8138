//! How a rule turns matches into firings: a closed set, one file per variant. Each
//! variant answers the same questions (a match, a tick, its next deadline, its rows, what
//! to store and take up again); the engine only dispatches.
//!
//! A rule holds two: one for edge events (`Gated`, or `Counted` with `times` + `within`,
//! `group_by` or `resolve_after`) and one for state events (`Stateful`). A process watch
//! sends both kinds, so a rule over it uses both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::absence::Absent;
use super::counted::Counted;
use super::gated::Gated;
use super::head::Head;
pub(super) use super::judged::{GroupCount, Heard, Judged, Restored, Ticked};
use super::rows::Row;
use super::schedule::Scheduled;
use super::stateful::Stateful;
use super::wall::WallClock;
use crate::config::{Expect, RuleConfig};

pub(super) enum Mechanism {
    /// Each edge match fires, through debounce, cooldown and the trigger limit.
    Gated(Gated),
    /// Edge matches counted per group; a firing that ends by `resolve_after`.
    Counted(Counted),
    /// A state machine per watch (and group) over state samples.
    Stateful(Stateful),
    /// `expect_within`: fires when no match came for that long.
    Absent(Box<Absent>),
    /// `expect`: fires when no match came after a scheduled time, within its grace.
    Scheduled(Box<Scheduled>),
}

/// What a mechanism is made with besides its rule.
pub(super) struct Setting {
    /// The host firings of matches that never came name.
    pub host: Arc<str>,
    pub wall: WallClock,
}

/// One arm per variant, each the same call on the variant's own type.
macro_rules! each {
    ($self:expr, $m:ident => $call:expr) => {
        match $self {
            Mechanism::Gated($m) => $call,
            Mechanism::Counted($m) => $call,
            Mechanism::Stateful($m) => $call,
            Mechanism::Absent($m) => $call,
            Mechanism::Scheduled($m) => $call,
        }
    };
}

impl Mechanism {
    /// The mechanism of a rule's edge events; of all its events when it expects a match.
    pub fn for_edges(head: &Head, setting: &Setting) -> Mechanism {
        let config = &head.config;
        let host = Arc::clone(&setting.host);
        if let Some(e) = &config.expectation {
            return match &e.expect {
                Expect::Within(d) => {
                    Mechanism::Absent(Box::new(Absent::new(head, *d, host, setting.wall)))
                }
                Expect::Schedule(s) => Mechanism::Scheduled(Box::new(Scheduled::new(
                    head,
                    (**s).clone(),
                    host,
                    setting.wall,
                ))),
            };
        }
        if Counted::applies(config) {
            Mechanism::Counted(Counted::default())
        } else {
            Mechanism::Gated(Gated::new(config))
        }
    }

    /// The mechanism of a rule's state events.
    pub fn for_states(_config: &RuleConfig) -> Mechanism {
        Mechanism::Stateful(Stateful::default())
    }

    /// Whether it hears state events too (a rule that expects a match hears every event
    /// of its watches here).
    pub fn hears_all(&self) -> bool {
        matches!(self, Mechanism::Absent(_) | Mechanism::Scheduled(_))
    }

    /// The nearest wall-clock time a match is due by, for a rule that expects one.
    pub fn next_due(&self) -> Option<SystemTime> {
        match self {
            Mechanism::Absent(m) => m.next_due(),
            Mechanism::Scheduled(m) => m.next_due(),
            _ => None,
        }
    }

    /// The store keys (after `rule/`) of the states it made before any event, to store
    /// at once (a rule's first load starts its window).
    pub fn start_keys(&self) -> Vec<String> {
        let keys = match self {
            Mechanism::Absent(m) => m.start_keys(),
            Mechanism::Scheduled(m) => m.start_keys(),
            _ => Vec::new(),
        };
        keys.iter().map(|k| super::expected::store_key(k)).collect()
    }

    /// What an event, matching its rule's condition or not, comes to.
    pub fn judge(&mut self, head: &Head, heard: Heard<'_>) -> Judged {
        each!(self, m => m.judge(head, heard))
    }

    /// Windows and deadlines that ended by `now`.
    pub fn tick(&mut self, head: &Head, now: Instant, out: &mut Ticked) {
        each!(self, m => m.tick(head, now, out))
    }

    /// The next moment `tick` has work.
    pub fn deadline(&self) -> Option<Instant> {
        each!(self, m => m.deadline())
    }

    pub fn is_firing(&self) -> bool {
        each!(self, m => m.is_firing())
    }

    /// Since when its longest firing state fires.
    pub fn firing_since(&self) -> Option<Instant> {
        each!(self, m => m.firing_since())
    }

    /// Whether it holds no state worth keeping when its rule leaves the configuration.
    pub fn is_empty(&self) -> bool {
        each!(self, m => m.is_empty())
    }

    /// Its states as rows for status and explain.
    pub fn rows(&self, head: &Head, now: Instant, out: &mut Vec<Row>) {
        each!(self, m => m.rows(head, now, out))
    }

    /// Its timers and counters in words when it has no state to show.
    pub fn idle_notes(&self, head: &Head, now: Instant) -> Vec<String> {
        each!(self, m => m.idle_notes(head, now))
    }

    /// The stored form of the state under `key` (after `rule/`); `None` removes it.
    pub fn save(&self, key: &str, now: Instant, wall: SystemTime) -> Option<Vec<u8>> {
        each!(self, m => m.save(key, now, wall))
    }

    /// Every state worth storing, by key (after `rule/`).
    pub fn save_all(&self, now: Instant, wall: SystemTime) -> Vec<(String, Vec<u8>)> {
        each!(self, m => m.save_all(now, wall))
    }

    /// The keys (after `rule/`) of its firing states.
    pub fn firing_keys(&self) -> Vec<String> {
        each!(self, m => m.firing_keys())
    }

    /// Takes up a state stored under `key` (after `rule/`) by an earlier run.
    pub fn restore(
        &mut self,
        head: &Head,
        key: &str,
        bytes: &[u8],
        now: Instant,
        wall: SystemTime,
    ) -> Restored {
        each!(self, m => m.restore(head, key, bytes, now, wall))
    }

    /// Takes over what a changed (or returning) rule's earlier mechanism held that still
    /// applies, as across a restart.
    pub fn carry(&mut self, head: &Head, old: &Mechanism, now: Instant, wall: SystemTime) {
        match (self, old) {
            (Mechanism::Counted(new), Mechanism::Counted(old)) => new.carry(head, old, now, wall),
            (Mechanism::Stateful(new), Mechanism::Stateful(old)) => new.carry(head, old, now, wall),
            (Mechanism::Absent(new), Mechanism::Absent(old)) => new.carry(head, old, now, wall),
            (Mechanism::Scheduled(new), Mechanism::Scheduled(old)) => {
                new.carry(head, old, now, wall)
            }
            _ => {}
        }
    }

    /// How many of its states fire, by watch.
    pub fn firing_counts(&self, out: &mut BTreeMap<Arc<str>, u64>) {
        each!(self, m => m.firing_counts(out))
    }

    /// Its groups, with `group_by`.
    pub fn groups(&self) -> GroupCount {
        each!(self, m => m.groups())
    }
}
