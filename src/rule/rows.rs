//! A rule's states as rows, for `hark status`, `hark explain` and the firing metric: one
//! per watch; with `group_by`, the firing groups and the most recently seen, not all of
//! them (a rule may hold `max_groups`, 10,000 by default).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::{Engine, Rule, GROUP_MARK};

/// Firing groups shown per rule, the longest firing first.
const SHOWN_FIRING: usize = 50;
/// Groups shown per rule beside the firing ones, the most recently seen first.
const SHOWN_RECENT: usize = 5;

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
}

impl Rule {
    /// The group's fields from its key (its values as a JSON array, in `group_by` order).
    pub(super) fn group_fields(&self, key: &str) -> Arc<BTreeMap<String, String>> {
        let values: Vec<String> = serde_json::from_str(key).unwrap_or_default();
        Arc::new(self.config.group_by.iter().cloned().zip(values).collect())
    }

    /// How many groups the rule holds now.
    pub(super) fn groups_held(&self) -> usize {
        if self.config.group_by.is_empty() {
            return 0;
        }
        self.episodes.groups.len() + self.state_groups.seen.len()
    }

    /// Its rows, as of `now`.
    pub(super) fn rows(&self, now: Instant) -> Vec<Row> {
        let mut out = Vec::new();
        let mut plain: Vec<_> = self
            .states
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
            });
        }
        // Groups of state watches: the firing ones, then the most recently seen.
        let mut firing: Vec<_> = self
            .states
            .iter()
            .filter_map(|(k, m)| Some((m.firing_since()?, k)))
            .filter(|(_, k)| k.contains(GROUP_MARK))
            .collect();
        firing.sort();
        let shown = firing
            .into_iter()
            .take(SHOWN_FIRING)
            .map(|(_, k)| k)
            .chain(self.state_groups.seen.newest(SHOWN_RECENT));
        let mut listed = std::collections::HashSet::new();
        for k in shown {
            let Some(m) = self.states.get(k).filter(|_| listed.insert(k)) else {
                continue;
            };
            let (watch, key) = k.split_once(GROUP_MARK).unwrap_or((k, ""));
            let (state, since) = m.phase();
            out.push(Row {
                watch: Some(Arc::from(watch)),
                group: Some(self.group_fields(key)),
                state,
                since,
                notes: m.describe(now),
            });
        }
        // Groups of event rules (`times` + `within`, `resolve_after`).
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
            let (state, since, notes) = g.phase(&self.config, now);
            out.push(Row {
                watch: Some(Arc::clone(&g.watch)),
                group: (!self.config.group_by.is_empty()).then(|| self.group_fields(k)),
                state,
                since,
                notes,
            });
        }
        if out.is_empty() {
            out.push(Row {
                watch: None,
                group: None,
                state: "ok",
                since: None,
                notes: self.gate.describe(now),
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
        for r in &self.rules {
            for (k, m) in &r.states {
                if m.is_firing() {
                    let watch = k.split(GROUP_MARK).next().unwrap_or(k);
                    *out.entry((Arc::clone(&r.name), Arc::from(watch)))
                        .or_default() += 1;
                }
            }
            for (k, _) in r.episodes.firing() {
                if let Some(g) = r.episodes.groups.get(k) {
                    *out.entry((Arc::clone(&r.name), Arc::clone(&g.watch)))
                        .or_default() += 1;
                }
            }
        }
        out
    }
}
