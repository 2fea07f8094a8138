//! What the two mechanisms of rules that expect a match share (absence.rs:
//! `expect_within`; schedule.rs: `expect`): one awaited match per group, the deadline by
//! which it is due, a firing when it is missed and its resolve at the next match. The
//! variants differ only in when a window that starts at a mark ends.
//!
//! Deadlines are instants of the monotonic clock, kept in one ordered set, so the nearest
//! of 100,000 groups is found without a pass over them. What is stored is wall-clock: the
//! mark a window runs from (the last match, or the first load) and since when it fires.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::awaited::{missed_event, Awaited, SavedAwaited};
use super::groups::GroupBook;
use super::head::Head;
use super::judged::{GroupCount, Heard, Judged, Restored, Ticked};
use super::rows::{Row, SHOWN_FIRING, SHOWN_RECENT};
use super::state::Step;
use super::verdict::RuleVerdict;
use crate::event::{human_duration, rfc3339, FiringState, GROUP_MARK};

/// Every group of one rule.
#[derive(Default)]
pub(super) struct Book {
    /// The host the firings of groups that never matched name.
    pub host: Arc<str>,
    groups: HashMap<Arc<str>, Awaited>,
    by_due: BTreeSet<(Instant, Arc<str>)>,
    firing: usize,
    book: GroupBook,
}

/// When a window from a mark ends, in wall-clock time: the variant's one question.
pub(super) type DueFrom<'a> = &'a dyn Fn(SystemTime) -> Option<SystemTime>;

/// A store key of a group (`␞group`; `␞` alone without `group_by`).
pub(super) fn store_key(group: &str) -> String {
    format!("{GROUP_MARK}{group}")
}

/// The instant of a wall-clock time, as seen at `now` / `wall`.
fn instant_of(t: SystemTime, now: Instant, wall: SystemTime) -> Instant {
    match t.duration_since(wall) {
        Ok(ahead) => now + ahead,
        Err(_) => now,
    }
}

impl Book {
    pub fn new(host: Arc<str>) -> Book {
        Book {
            host,
            ..Book::default()
        }
    }

    /// The groups that exist before any match (the one group of a rule without
    /// `group_by`, the keys of `expect_groups`): their windows start now.
    pub fn start(&mut self, head: &Head, now: Instant, wall: SystemTime, due: DueFrom<'_>) {
        let keys: Vec<String> = if head.config.group_by.is_empty() {
            vec![String::new()]
        } else {
            head.config
                .expectation
                .as_ref()
                .map(|e| e.groups.clone())
                .unwrap_or_default()
        };
        let watch: Arc<str> = Arc::from(head.config.watches.first().map_or("", String::as_str));
        for k in keys {
            let key: Arc<str> = Arc::from(k);
            if !self.groups.contains_key(&key) {
                self.put(
                    key,
                    Arc::clone(&watch),
                    wall,
                    false,
                    None,
                    0,
                    now,
                    wall,
                    due,
                );
            }
        }
    }

    /// The keys `start` made, to be stored so that a restart keeps their windows.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.groups.keys()
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        key: Arc<str>,
        watch: Arc<str>,
        from: SystemTime,
        matched: bool,
        firing: Option<(Instant, SystemTime)>,
        fired: u64,
        now: Instant,
        wall: SystemTime,
        due: DueFrom<'_>,
    ) {
        self.remove(&key);
        let due = match firing {
            Some(_) => None,
            None => due(from).map(|t| (instant_of(t, now, wall), t)),
        };
        if let Some((at, _)) = due {
            self.by_due.insert((at, Arc::clone(&key)));
        }
        self.firing += usize::from(firing.is_some());
        let g = Awaited {
            watch,
            from,
            matched,
            due,
            firing,
            fired,
        };
        self.groups.insert(key, g);
    }

    fn remove(&mut self, key: &Arc<str>) -> Option<Awaited> {
        let g = self.groups.remove(key)?;
        if let Some((at, _)) = g.due {
            self.by_due.remove(&(at, Arc::clone(key)));
        }
        self.firing -= usize::from(g.firing.is_some());
        Some(g)
    }

    /// A match: its group's window starts again; a firing group resolves.
    pub fn judge(
        &mut self,
        head: &Head,
        heard: &Heard<'_>,
        wall: SystemTime,
        due: DueFrom<'_>,
    ) -> Judged {
        let (event, now) = (heard.event, heard.now);
        let key: Arc<str> = match head.group_key(event) {
            Ok(k) => Arc::from(k.unwrap_or_default()),
            Err(e) => return Judged::of(RuleVerdict::Error(e)),
        };
        let old = self.remove(&key);
        if old.is_none() && self.groups.len() >= head.config.max_groups {
            self.book.refuse(head, &key, now);
            return Judged::of(RuleVerdict::State(Step::Ok));
        }
        let fired = old.as_ref().map_or(0, |g| g.fired);
        let firing = old.and_then(|g| g.firing);
        self.put(
            Arc::clone(&key),
            Arc::clone(&event.watch),
            wall,
            true,
            None,
            fired,
            now,
            wall,
            due,
        );
        let changed = vec![Arc::from(store_key(&key))];
        let Some((since, _)) = firing else {
            return Judged {
                verdict: RuleVerdict::State(Step::Ok),
                firing: None,
                changed,
            };
        };
        let duration = now.saturating_duration_since(since);
        tracing::info!(rule = %head.name, watch = %event.watch, group = %key, firing_for = %human_duration(duration), "the expected match came: rule resolved");
        let mut f = head.firing(event, FiringState::Resolved, fired, duration);
        f.group = (!head.config.group_by.is_empty()).then(|| head.group(key));
        f.resolves = true;
        Judged {
            verdict: RuleVerdict::State(Step::Resolve {
                count: fired,
                duration,
            }),
            firing: Some(f),
            changed,
        }
    }

    /// Groups whose match was due by `now` and did not come: each fires, once.
    pub fn tick(&mut self, head: &Head, now: Instant, wall: SystemTime, out: &mut Ticked) {
        while let Some((at, key)) = self.by_due.first().cloned() {
            if at > now {
                break;
            }
            self.by_due.pop_first();
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            let Some((_, due_wall)) = g.due.take() else {
                continue;
            };
            g.firing = Some((now, wall));
            g.fired += 1;
            self.firing += 1;
            let last = g.matched.then(|| rfc3339(g.from));
            tracing::info!(rule = %head.name, group = %key, due = %rfc3339(due_wall), last_match = last.as_deref().unwrap_or("none"), "the expected match did not come: rule fired");
            let event = missed_event(head, &self.host, &key, g, due_wall);
            let mut f = head.firing(&event, FiringState::Firing, g.fired, Duration::ZERO);
            f.group = (!head.config.group_by.is_empty()).then(|| head.group(Arc::clone(&key)));
            f.resolves = true;
            out.firings.push(f);
            out.changed.push(Arc::from(store_key(&key)));
        }
    }

    /// Every deadline worked out again from its wall-clock time (the wall clock stepped).
    pub fn reschedule(&mut self, now: Instant, wall: SystemTime) {
        self.by_due.clear();
        for (key, g) in self.groups.iter_mut() {
            if let Some((at, t)) = g.due.as_mut() {
                *at = instant_of(*t, now, wall);
                self.by_due.insert((*at, Arc::clone(key)));
            }
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.by_due.first().map(|(at, _)| *at)
    }

    /// The nearest wall-clock time a match is due by.
    pub fn next_due(&self) -> Option<SystemTime> {
        let (_, key) = self.by_due.first()?;
        self.groups.get(key)?.due.map(|(_, t)| t)
    }

    pub fn is_firing(&self) -> bool {
        self.firing > 0
    }

    pub fn firing_since(&self) -> Option<Instant> {
        self.groups
            .values()
            .filter_map(|g| g.firing.map(|(at, _)| at))
            .min()
    }

    /// The firing groups (the longest first), then the nearest deadlines.
    pub fn rows(
        &self,
        head: &Head,
        now: Instant,
        notes: &dyn Fn(&Awaited) -> Vec<String>,
        out: &mut Vec<Row>,
    ) {
        let mut firing: Vec<(Instant, &Arc<str>)> = self
            .groups
            .iter()
            .filter_map(|(k, g)| Some((g.firing?.0, k)))
            .collect();
        firing.sort();
        let nearest = self
            .by_due
            .iter()
            .map(|(_, k)| k)
            .take(SHOWN_RECENT.max(10));
        let shown = firing
            .into_iter()
            .take(SHOWN_FIRING)
            .map(|(_, k)| k)
            .chain(nearest);
        for k in shown {
            let Some(g) = self.groups.get(k) else {
                continue;
            };
            out.push(Row {
                watch: Some(Arc::clone(&g.watch)),
                group: (!head.config.group_by.is_empty()).then(|| head.group_fields(k)),
                state: if g.firing.is_some() { "firing" } else { "ok" },
                since: g.firing.map(|(at, _)| at).or(Some(now)),
                notes: notes(g),
                due: g.due.map(|(_, t)| t),
            });
        }
    }

    pub fn save(&self, key: &str) -> Option<Vec<u8>> {
        let g = self.groups.get(key.strip_prefix(GROUP_MARK)?)?;
        serde_json::to_vec(&SavedAwaited {
            from: g.from,
            matched: g.matched,
            firing_since: g.firing.map(|(_, t)| t),
            fired: g.fired,
        })
        .ok()
    }

    pub fn save_all(&self) -> Vec<(String, Vec<u8>)> {
        self.groups
            .keys()
            .filter_map(|k| {
                let key = store_key(k);
                let bytes = self.save(&key)?;
                Some((key, bytes))
            })
            .collect()
    }

    pub fn firing_keys(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, g)| g.firing.is_some())
            .map(|(k, _)| store_key(k))
            .collect()
    }

    /// A group stored by an earlier run: it goes on firing (without firing again), or its
    /// window goes on from its stored mark (a deadline that passed meanwhile fires at
    /// the first tick, once).
    pub fn restore(
        &mut self,
        head: &Head,
        key: &str,
        bytes: &[u8],
        now: Instant,
        wall: SystemTime,
        due: DueFrom<'_>,
    ) -> Restored {
        let Some(group) = key.strip_prefix(GROUP_MARK) else {
            return Restored::Stale;
        };
        let saved: SavedAwaited = match serde_json::from_slice(bytes) {
            Ok(s) => s,
            Err(e) => return Restored::Undecodable(e.to_string()),
        };
        let watch: Arc<str> = Arc::from(head.config.watches.first().map_or("", String::as_str));
        let firing = saved.firing_since.map(|t| {
            let ago = wall.duration_since(t).unwrap_or_default();
            (now.checked_sub(ago).unwrap_or(now), t)
        });
        self.put(
            Arc::from(group),
            watch,
            saved.from,
            saved.matched,
            firing,
            saved.fired,
            now,
            wall,
            due,
        );
        Restored::Taken
    }

    /// What an earlier mechanism of a changed rule held, through its stored form.
    pub fn carry(
        &mut self,
        head: &Head,
        old: &Book,
        now: Instant,
        wall: SystemTime,
        due: DueFrom<'_>,
    ) {
        for (key, bytes) in old.save_all() {
            let _ = self.restore(head, &key, &bytes, now, wall, due);
        }
    }

    pub fn firing_counts(&self, out: &mut BTreeMap<Arc<str>, u64>) {
        for g in self.groups.values().filter(|g| g.firing.is_some()) {
            *out.entry(Arc::clone(&g.watch)).or_default() += 1;
        }
    }

    pub fn groups(&self) -> GroupCount {
        GroupCount {
            held: self.groups.len(),
            dropped: self.book.dropped,
            refused: self.book.refused,
        }
    }
}
