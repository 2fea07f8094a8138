//! The plainest mechanism: each matching edge event fires, through the rule's gate
//! (debounce, cooldown, trigger limit; see edge.rs). It stores nothing: a gate's windows
//! are seconds long and start afresh after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::edge::EdgeGate;
use super::head::Head;
use super::judged::{GroupCount, Heard, Judged, Restored, Ticked};
use super::rows::Row;
use super::verdict::{RuleVerdict, TickNote};
use crate::config::RuleConfig;

pub(super) struct Gated {
    gate: EdgeGate,
}

impl Gated {
    pub fn new(config: &RuleConfig) -> Gated {
        Gated {
            gate: EdgeGate::new(config.debounce, config.cooldown, config.trigger_limit)
                .dropping_in_cooldown(config.drop_in_cooldown),
        }
    }

    pub fn judge(&mut self, head: &Head, mut heard: Heard<'_>) -> Judged {
        if let Some(judged) = heard.edge_prelude(head) {
            return judged;
        }
        let verdict = self.gate.on_match(heard.event, heard.now);
        Judged {
            firing: head.edge_verdict(heard.event, &verdict),
            verdict: RuleVerdict::Edge(verdict),
            changed: Vec::new(),
        }
    }

    /// Debounce windows and held cooldowns that ended: each fires once.
    pub fn tick(&mut self, head: &Head, now: Instant, out: &mut Ticked) {
        while let Some((ended, burst, verdict)) = self.gate.on_tick(now) {
            out.notes
                .push(TickNote::of(&head.name, &burst.event, ended, &verdict));
            if let Some(mut f) = head.edge_verdict(&burst.event, &verdict) {
                f.last = Some(burst.last);
                f.kinds = burst.kinds;
                out.firings.push(f);
            }
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.gate.deadline()
    }

    pub fn is_firing(&self) -> bool {
        false
    }

    pub fn firing_since(&self) -> Option<Instant> {
        None
    }

    pub fn is_empty(&self) -> bool {
        true
    }

    pub fn rows(&self, _head: &Head, _now: Instant, _out: &mut [Row]) {}

    pub fn idle_notes(&self, _head: &Head, now: Instant) -> Vec<String> {
        self.gate.describe(now)
    }

    pub fn save(&self, _key: &str, _now: Instant, _wall: SystemTime) -> Option<Vec<u8>> {
        None
    }

    pub fn save_all(&self, _now: Instant, _wall: SystemTime) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }

    pub fn firing_keys(&self) -> Vec<String> {
        Vec::new()
    }

    pub fn restore(
        &mut self,
        _head: &Head,
        _key: &str,
        _bytes: &[u8],
        _now: Instant,
        _wall: SystemTime,
    ) -> Restored {
        Restored::Stale
    }

    pub fn firing_counts(&self, _out: &mut BTreeMap<Arc<str>, u64>) {}

    pub fn groups(&self) -> GroupCount {
        GroupCount::default()
    }
}
