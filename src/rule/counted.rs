//! Edge events counted per group (`times` + `within`, `group_by`) and firings that end
//! by themselves (`resolve_after`): fail2ban's ban and unban, with any action. The groups
//! themselves live in episode.rs; this file is what the engine asks of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::edge::Verdict;
use super::episode::{window, Episodes, SavedEpisode};
use super::head::Head;
use super::judged::{GroupCount, Heard, Judged, Restored, Ticked};
use super::rows::{Row, SHOWN_FIRING, SHOWN_RECENT};
use super::state::Step;
use super::verdict::RuleVerdict;
use crate::config::RuleConfig;
use crate::event::{human_duration, FiringState, GROUP_MARK};

#[derive(Default)]
pub(super) struct Counted {
    pub episodes: Episodes,
}

/// The group key of a store key (`␞group`).
fn group_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(GROUP_MARK)
}

fn store_key(group: &str) -> String {
    format!("{GROUP_MARK}{group}")
}

impl Counted {
    /// Whether a rule's edge matches are counted per group rather than each firing.
    pub fn applies(config: &RuleConfig) -> bool {
        !config.group_by.is_empty() || config.resolve_after.is_some() || window(config).is_some()
    }

    pub fn judge(&mut self, head: &Head, mut heard: Heard<'_>) -> Judged {
        if let Some(judged) = heard.edge_prelude(head) {
            return judged;
        }
        let (event, now) = (heard.event, heard.now);
        let key = match head.group_key(event) {
            Ok(k) => k.unwrap_or_default(),
            Err(e) => return Judged::of(RuleVerdict::Error(e)),
        };
        let (step, key) = self.episodes.on_match(head, &key, event, now);
        let (Step::Fire { count }, Some(key)) = (&step, key) else {
            return Judged::of(RuleVerdict::State(step));
        };
        let count = *count;
        let gate = self
            .episodes
            .groups
            .get_mut(&key)
            .map(|g| g.gate.try_fire(count, now));
        match gate {
            Some(Verdict::Fire { count }) => {
                tracing::info!(rule = %head.name, watch = %event.watch, group = %key, count, "rule fired");
                let mut f = head.firing(event, FiringState::Firing, count, Duration::ZERO);
                f.group = (!head.config.group_by.is_empty()).then(|| head.group(Arc::clone(&key)));
                // A firing that resolves by itself is stored, to resolve after a restart.
                let stored = head.config.resolve_after.is_some();
                Judged {
                    verdict: RuleVerdict::State(Step::Fire { count }),
                    firing: Some(f),
                    changed: stored
                        .then(|| Arc::from(store_key(&key)))
                        .into_iter()
                        .collect(),
                }
            }
            Some(held) => {
                self.episodes.held_back(&key);
                let _ = head.edge_verdict(event, &held);
                Judged::of(RuleVerdict::Edge(held))
            }
            None => Judged::of(RuleVerdict::State(Step::Ok)),
        }
    }

    /// Groups quiet for `resolve_after`: their firing ends.
    pub fn tick(&mut self, head: &Head, now: Instant, out: &mut Ticked) {
        for (key, event, count, duration) in self.episodes.due(now) {
            let event = event.unwrap_or_else(|| head.group_event(&key));
            tracing::info!(rule = %head.name, group = %key, firing_for = %human_duration(duration), "rule resolved");
            let mut f = head.firing(&event, FiringState::Resolved, count, duration);
            f.group = head.group_of(&event).ok().flatten();
            out.firings.push(f);
            out.changed.push(Arc::from(store_key(&key)));
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.episodes.deadline()
    }

    pub fn is_firing(&self) -> bool {
        self.episodes.any_firing()
    }

    pub fn firing_since(&self) -> Option<Instant> {
        self.episodes.firing().map(|(_, s)| s).min()
    }

    pub fn is_empty(&self) -> bool {
        true
    }

    /// The firing groups, the longest firing first, then the most recently seen.
    pub fn rows(&self, head: &Head, now: Instant, out: &mut Vec<Row>) {
        let mut firing: Vec<_> = self.episodes.firing().map(|(k, s)| (s, k)).collect();
        firing.sort();
        let shown = firing
            .into_iter()
            .take(SHOWN_FIRING)
            .map(|(_, k)| k)
            .chain(self.episodes.newest(SHOWN_RECENT));
        let mut listed = std::collections::HashSet::new();
        for k in shown {
            let Some(g) = self.episodes.groups.get(k).filter(|_| listed.insert(k)) else {
                continue;
            };
            let (state, since, notes) = g.phase(&head.config, now);
            out.push(Row {
                watch: Some(Arc::clone(&g.watch)),
                group: (!head.config.group_by.is_empty()).then(|| head.group_fields(k)),
                state,
                since,
                notes,
                due: None,
            });
        }
    }

    /// Without a group yet: the settings of the gate each group gets.
    pub fn idle_notes(&self, head: &Head, now: Instant) -> Vec<String> {
        let c = &head.config;
        super::edge::EdgeGate::new(c.debounce, c.cooldown, c.trigger_limit).describe(now)
    }

    pub fn save(&self, key: &str, now: Instant, wall: SystemTime) -> Option<Vec<u8>> {
        let saved = self.episodes.save(group_of_key(key)?, now, wall)?;
        serde_json::to_vec(&saved).ok()
    }

    pub fn save_all(&self, now: Instant, wall: SystemTime) -> Vec<(String, Vec<u8>)> {
        self.episodes
            .firing_keys()
            .into_iter()
            .filter_map(|g| {
                let saved = self.episodes.save(&g, now, wall)?;
                Some((store_key(&g), serde_json::to_vec(&saved).ok()?))
            })
            .collect()
    }

    pub fn firing_keys(&self) -> Vec<String> {
        self.episodes
            .firing_keys()
            .iter()
            .map(|g| store_key(g))
            .collect()
    }

    /// A firing group saved by an earlier run goes on firing, and resolves on time (at
    /// once if its `resolve_after` passed while hark was stopped).
    pub fn restore(
        &mut self,
        head: &Head,
        key: &str,
        bytes: &[u8],
        now: Instant,
        wall: SystemTime,
    ) -> Restored {
        let Some(group) = group_of_key(key) else {
            return Restored::Stale;
        };
        match serde_json::from_slice::<SavedEpisode>(bytes) {
            Ok(s) if head.config.resolve_after.is_some() => {
                let event = head.group_event(group);
                self.episodes
                    .restore(&head.config, Arc::from(group), &s.episode, event, now, wall);
                tracing::info!(rule = %head.name, group, "still firing from before the restart");
                Restored::Taken
            }
            _ => Restored::Stale,
        }
    }

    /// Firing groups go on firing (and resolve on time) if the rule still resolves groups
    /// by `resolve_after`.
    pub fn carry(&mut self, head: &Head, old: &Counted, now: Instant, wall: SystemTime) {
        if head.config.resolve_after.is_none() {
            return;
        }
        for key in old.episodes.firing_keys() {
            if let Some(s) = old.episodes.save(&key, now, wall) {
                let event = old
                    .episodes
                    .event(&key)
                    .unwrap_or_else(|| head.group_event(&key));
                self.episodes
                    .restore(&head.config, key, &s.episode, event, now, wall);
            }
        }
    }

    pub fn firing_counts(&self, out: &mut BTreeMap<Arc<str>, u64>) {
        for (k, _) in self.episodes.firing() {
            if let Some(g) = self.episodes.groups.get(k) {
                *out.entry(Arc::clone(&g.watch)).or_default() += 1;
            }
        }
    }

    pub fn groups(&self) -> GroupCount {
        GroupCount {
            held: self.episodes.groups.len(),
            dropped: self.episodes.book.dropped,
            refused: self.episodes.book.refused,
        }
    }
}
