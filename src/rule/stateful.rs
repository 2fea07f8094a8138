//! State events (a check's latest result) through one state machine per watch, and per
//! group with `group_by`, so a rule over two endpoints alerts for each on its own. The
//! machine itself (ok → pending → firing → resolved) is state.rs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::groups::GroupBook;
use super::head::Head;
use super::judged::{GroupCount, Heard, Judged, Restored, Ticked};
use super::lru::Recency;
use super::rows::{Row, SHOWN_FIRING, SHOWN_RECENT};
use super::state::{Saved, StateMachine, Step};
use super::verdict::RuleVerdict;
use crate::config::RuleConfig;
use crate::event::GROUP_MARK;

#[derive(Default)]
pub(super) struct Stateful {
    /// By watch, or `watch␞group` with `group_by`.
    machines: HashMap<Arc<str>, StateMachine>,
    /// With `group_by`: the groups by when last seen.
    recency: Recency,
    book: GroupBook,
}

fn new_machine(r: &RuleConfig) -> StateMachine {
    StateMachine::new(r.threshold, r.repeat, r.cooldown)
}

impl Stateful {
    pub fn judge(&mut self, head: &Head, heard: Heard<'_>) -> Judged {
        let Heard {
            event,
            matched,
            quiet,
            now,
        } = heard;
        let (key, group) = match head.group_of(event) {
            Ok(Some(g)) => (
                Arc::from(format!("{}{GROUP_MARK}{}", event.watch, g.key).as_str()),
                Some(g),
            ),
            Ok(None) => (Arc::clone(&event.watch), None),
            Err(e) => return Judged::of(RuleVerdict::Error(e)),
        };
        let mut changed = Vec::new();
        if group.is_some() && !self.machines.contains_key(&key) {
            match self.room_for_a_group(head, now) {
                Ok(dropped) => changed.extend(dropped),
                Err(e) => return Judged::of(RuleVerdict::Error(e)),
            }
        }
        let machine = self
            .machines
            .entry(Arc::clone(&key))
            .or_insert_with(|| new_machine(&head.config));
        let step = machine.on_sample(matched, quiet.is_some(), now);
        if group.is_some() {
            self.recency.saw(&key, machine.is_firing());
        }
        if matches!(
            step,
            Step::Fire { .. } | Step::Repeat { .. } | Step::Resolve { .. }
        ) {
            changed.push(key);
        }
        let mut firing = head.state_step(event, &step, quiet.as_deref());
        if let Some(f) = &mut firing {
            f.group = group;
        }
        Judged {
            verdict: RuleVerdict::State(step),
            firing,
            changed,
        }
    }

    /// Room for one more group's state machine: the keys dropped for it (groups not
    /// firing, least recently seen first), or an error when every group is firing.
    fn room_for_a_group(&mut self, head: &Head, now: Instant) -> Result<Vec<Arc<str>>, String> {
        let max = head.config.max_groups;
        let Some(dropped) = self.recency.make_room(self.machines.len(), max) else {
            self.book.refuse(head, "(a state group)", now);
            return Err(format!(
                "{max} groups (max_groups), every one firing: a new group waits for room"
            ));
        };
        for k in &dropped {
            self.machines.remove(k);
            self.book.drop_one(head);
        }
        Ok(dropped)
    }

    /// A machine resolves only on a sample: nothing to do at a tick.
    pub fn tick(&mut self, _head: &Head, _now: Instant, _out: &mut Ticked) {}

    pub fn deadline(&self) -> Option<Instant> {
        None
    }

    pub fn is_firing(&self) -> bool {
        self.machines.values().any(StateMachine::is_firing)
    }

    pub fn firing_since(&self) -> Option<Instant> {
        self.machines
            .values()
            .filter_map(StateMachine::firing_since)
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    /// One row per watch; with `group_by`, the firing groups and the most recently seen.
    pub fn rows(&self, head: &Head, now: Instant, out: &mut Vec<Row>) {
        let mut plain: Vec<_> = self
            .machines
            .iter()
            .filter(|(k, _)| !k.contains(GROUP_MARK))
            .collect();
        plain.sort_by(|a, b| a.0.cmp(b.0));
        for (w, m) in plain {
            let (state, since) = m.phase();
            out.push(Row {
                watch: Some(Arc::clone(w)),
                group: None,
                state,
                since,
                notes: m.describe(now),
                due: None,
            });
        }
        let mut firing: Vec<_> = self
            .machines
            .iter()
            .filter_map(|(k, m)| Some((m.firing_since()?, k)))
            .filter(|(_, k)| k.contains(GROUP_MARK))
            .collect();
        firing.sort();
        let shown = firing
            .into_iter()
            .take(SHOWN_FIRING)
            .map(|(_, k)| k)
            .chain(self.recency.seen.newest(SHOWN_RECENT));
        let mut listed = HashSet::new();
        for k in shown {
            let Some(m) = self.machines.get(k).filter(|_| listed.insert(k)) else {
                continue;
            };
            let (watch, key) = k.split_once(GROUP_MARK).unwrap_or((k, ""));
            let (state, since) = m.phase();
            out.push(Row {
                watch: Some(Arc::from(watch)),
                group: Some(head.group_fields(key)),
                state,
                since,
                notes: m.describe(now),
                due: None,
            });
        }
    }

    pub fn idle_notes(&self, _head: &Head, _now: Instant) -> Vec<String> {
        Vec::new()
    }

    pub fn save(&self, key: &str, now: Instant, wall: SystemTime) -> Option<Vec<u8>> {
        // A state dropped (a group, for room) is removed from the store too.
        let m = self.machines.get(key).filter(|m| m.worth_saving())?;
        serde_json::to_vec(&m.save(now, wall)).ok()
    }

    pub fn save_all(&self, now: Instant, wall: SystemTime) -> Vec<(String, Vec<u8>)> {
        self.machines
            .iter()
            .filter(|(_, m)| m.worth_saving())
            .filter_map(|(k, m)| {
                Some((k.to_string(), serde_json::to_vec(&m.save(now, wall)).ok()?))
            })
            .collect()
    }

    pub fn firing_keys(&self) -> Vec<String> {
        self.machines
            .iter()
            .filter(|(_, m)| m.firing_since().is_some())
            .map(|(k, _)| k.to_string())
            .collect()
    }

    pub fn restore(
        &mut self,
        head: &Head,
        key: &str,
        bytes: &[u8],
        now: Instant,
        wall: SystemTime,
    ) -> Restored {
        match serde_json::from_slice::<Saved>(bytes) {
            Ok(s) if fits(head, key) => {
                let mut m = new_machine(&head.config);
                m.restore(&s, now, wall);
                if m.is_firing() {
                    tracing::info!(rule = %head.name, watch = key, "still firing from before the restart");
                }
                self.take(Arc::from(key), m);
                Restored::Taken
            }
            Ok(_) => Restored::Stale,
            Err(e) => Restored::Undecodable(e.to_string()),
        }
    }

    /// The firing and last fired of the watches (and groups) the rule still hears.
    pub fn carry(&mut self, head: &Head, old: &Stateful, now: Instant, wall: SystemTime) {
        for (w, m) in &old.machines {
            if m.worth_saving() && fits(head, w) {
                let mut fresh = new_machine(&head.config);
                fresh.restore(&m.save(now, wall), now, wall);
                self.take(Arc::clone(w), fresh);
            }
        }
    }

    /// Takes up a state kept from before (a restart, a reload).
    fn take(&mut self, key: Arc<str>, m: StateMachine) {
        if key.contains(GROUP_MARK) {
            self.recency.saw(&key, m.is_firing());
        }
        self.machines.insert(key, m);
    }

    pub fn firing_counts(&self, out: &mut BTreeMap<Arc<str>, u64>) {
        for (k, m) in &self.machines {
            if m.is_firing() {
                let watch = k.split(GROUP_MARK).next().unwrap_or(k);
                *out.entry(Arc::from(watch)).or_default() += 1;
            }
        }
    }

    pub fn groups(&self) -> GroupCount {
        GroupCount {
            held: self.recency.seen.len(),
            dropped: self.book.dropped,
            refused: self.book.refused,
        }
    }
}

/// Whether a saved state keyed `watch` (or `watch␞group`) belongs to this rule: a watch
/// it hears, grouped exactly when the rule has `group_by`.
fn fits(head: &Head, key: &str) -> bool {
    let watch = key.split(GROUP_MARK).next().unwrap_or(key);
    head.config.watches.iter().any(|w| w == watch)
        && key.contains(GROUP_MARK) != head.config.group_by.is_empty()
}
