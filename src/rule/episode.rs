//! Event watches (files, logs, process starts) counted per group: `times` matching events
//! within `within` before the rule fires, and `resolve_after`: a firing ends (its `resolve`
//! runs) that long after its group's last matching event. fail2ban's ban and unban, with
//! any action. Time is passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::edge::EdgeGate;
use super::groups::GroupBook;
use super::head::Head;
use super::state::{Progress, Step};
use crate::config::RuleConfig;
use crate::event::Event;

/// One group's count and firing.
pub struct Episode {
    /// Matching events inside the window (`times` + `within`).
    hits: VecDeque<Instant>,
    firing_since: Option<Instant>,
    last_match: Instant,
    /// Matching events of this episode.
    count: u64,
    /// The last matching event: what a resolve's templates see (kept with
    /// `resolve_after` only: a rule without holds no event per group).
    pub event: Option<Arc<Event>>,
    /// The watch of its last matching event.
    pub watch: Arc<str>,
    /// Cooldown and trigger limit, per group.
    pub gate: EdgeGate,
    /// When its firing resolves, as scheduled in `Episodes::deadlines`.
    due: Option<Instant>,
    /// When it was last seen: its place in `Episodes::order`.
    seen: u64,
}

impl Episode {
    /// `firing` (since when), `pending` (matches in the window) or `ok`, with counters
    /// and timers in words.
    pub fn phase(
        &self,
        config: &RuleConfig,
        now: Instant,
    ) -> (&'static str, Option<Instant>, Vec<String>) {
        let d = crate::event::human_duration;
        let mut notes = vec![format!(
            "last match {} ago",
            d(now.saturating_duration_since(self.last_match))
        )];
        if let Some(since) = self.firing_since {
            notes.push(format!("{} matching events while firing", self.count));
            if let Some(due) = self.due {
                notes.push(format!(
                    "resolves in {} unless it matches again (resolve_after)",
                    d(due.saturating_duration_since(now))
                ));
            }
            return ("firing", Some(since), notes);
        }
        if let Some((times, within)) = window(config) {
            let recent: Vec<&Instant> = self
                .hits
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < within)
                .collect();
            if let Some(first) = recent.first() {
                notes.push(format!(
                    "{} of {times} matching events within {}",
                    recent.len(),
                    d(within)
                ));
                return ("pending", Some(**first), notes);
            }
        }
        ("ok", None, notes)
    }
}

/// A group that resolves: its key, its last event, its count, how long it fired.
pub type Due = (Arc<str>, Option<Arc<Event>>, u64, Duration);

/// Moves a group's resolve deadline (or, `None`, takes it away).
fn reschedule(
    deadlines: &mut BTreeSet<(Instant, Arc<str>)>,
    key: &Arc<str>,
    g: &mut Episode,
    at: Option<Instant>,
) {
    if let Some(old) = g.due.take() {
        deadlines.remove(&(old, Arc::clone(key)));
    }
    if let Some(at) = at {
        deadlines.insert((at, Arc::clone(key)));
        g.due = Some(at);
    }
}

/// What survives a restart of a firing group: firing since when, its last match.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedEpisode {
    pub episode: SavedFiringEpisode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedFiringEpisode {
    pub since: SystemTime,
    pub last_match: SystemTime,
    pub count: u64,
}

/// The groups of one rule over event watches, at most `max` of them.
#[derive(Default)]
pub struct Episodes {
    pub groups: HashMap<Arc<str>, Episode>,
    /// The groups by when they were last seen (a counter), oldest first.
    order: BTreeMap<u64, Arc<str>>,
    next_seen: u64,
    /// Resolve deadlines of firing groups.
    deadlines: BTreeSet<(Instant, Arc<str>)>,
    /// Groups dropped and refused for room.
    pub book: GroupBook,
}

pub(super) fn window(config: &RuleConfig) -> Option<(u32, Duration)> {
    match config.threshold {
        crate::config::Threshold::Window { times, within } => Some((times, within)),
        _ => None,
    }
}

impl Episodes {
    /// Room for one more group: the least recently seen groups not firing are dropped.
    /// False when every group held is firing (`order` holds only the others).
    fn make_room(&mut self, head: &Head) -> bool {
        while self.groups.len() >= head.config.max_groups {
            let Some((_, key)) = self.order.pop_first() else {
                return false;
            };
            if let Some(mut g) = self.groups.remove(&key) {
                reschedule(&mut self.deadlines, &key, &mut g, None);
            }
            self.book.drop_one(head);
        }
        true
    }

    /// A group not firing takes its place in `order` as the most recently seen; a firing
    /// one leaves it (it is never dropped for room).
    fn place(order: &mut BTreeMap<u64, Arc<str>>, next: &mut u64, key: &Arc<str>, g: &mut Episode) {
        order.remove(&g.seen);
        g.seen = *next;
        *next += 1;
        if g.firing_since.is_none() {
            order.insert(g.seen, Arc::clone(key));
        }
    }

    /// The most recently seen groups not firing, newest first.
    pub fn newest(&self, n: usize) -> impl Iterator<Item = &Arc<str>> {
        self.order.values().rev().take(n)
    }

    /// A matching event of group `key` at `now`: the step, and the group's key (None when
    /// there is no room for a new group).
    pub fn on_match(
        &mut self,
        head: &Head,
        key: &str,
        event: &Arc<Event>,
        now: Instant,
    ) -> (Step, Option<Arc<str>>) {
        let config = &head.config;
        if !self.groups.contains_key(key) {
            if !self.make_room(head) {
                // Every group is firing: the new one waits for room (a firing group ends
                // by `resolve_after`).
                self.book.refuse(head, key, now);
                return (Step::Ok, None);
            }
            self.groups.insert(
                Arc::from(key),
                Episode {
                    hits: VecDeque::new(),
                    firing_since: None,
                    last_match: now,
                    count: 0,
                    event: None,
                    watch: Arc::clone(&event.watch),
                    gate: EdgeGate::new(None, config.cooldown, config.trigger_limit),
                    due: None,
                    seen: u64::MAX,
                },
            );
        }
        let Some((key, _)) = self.groups.get_key_value(key) else {
            return (Step::Ok, None);
        };
        let key = Arc::clone(key);
        let Some(g) = self.groups.get_mut(&key) else {
            return (Step::Ok, None);
        };
        let key = &key;
        g.last_match = now;
        if config.resolve_after.is_some() {
            g.event = Some(Arc::clone(event));
        }
        if g.watch != event.watch {
            g.watch = Arc::clone(&event.watch);
        }
        g.count += 1;
        let step = Self::count(&mut self.deadlines, config, key, g, now);
        Self::place(&mut self.order, &mut self.next_seen, key, g);
        (step, Some(Arc::clone(key)))
    }

    /// Counts a match of group `g` (at `now`): what it comes to.
    fn count(
        deadlines: &mut BTreeSet<(Instant, Arc<str>)>,
        config: &RuleConfig,
        key: &Arc<str>,
        g: &mut Episode,
        now: Instant,
    ) -> Step {
        if let (Some(ra), Some(_)) = (config.resolve_after, g.firing_since) {
            reschedule(deadlines, key, g, Some(now + ra));
            return Step::StillFiring;
        }
        if let Some((times, within)) = window(config) {
            g.hits.push_back(now);
            while g
                .hits
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= within)
            {
                g.hits.pop_front();
            }
            let n = g.hits.len() as u32;
            if n < times {
                return Step::Pending(Progress::Matches { n, times });
            }
            g.hits.clear();
        }
        let count = g.count;
        match config.resolve_after {
            Some(ra) => {
                g.firing_since = Some(now);
                reschedule(deadlines, key, g, Some(now + ra));
            }
            None => g.count = 0,
        }
        Step::Fire { count }
    }

    /// A firing that the gate (cooldown, trigger limit) held back does not stay firing.
    pub fn held_back(&mut self, key: &Arc<str>) {
        if let Some(g) = self.groups.get_mut(key) {
            g.firing_since = None;
            reschedule(&mut self.deadlines, key, g, None);
            Self::place(&mut self.order, &mut self.next_seen, key, g);
        }
    }

    /// The next resolve due.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Groups whose `resolve_after` has passed by `now`.
    pub fn due(&mut self, now: Instant) -> Vec<Due> {
        let mut out = Vec::new();
        while let Some((t, key)) = self.deadlines.first().cloned() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(g) = self.groups.get_mut(&key) {
                g.due = None;
                if let Some(since) = g.firing_since.take() {
                    Self::place(&mut self.order, &mut self.next_seen, &key, g);
                    out.push((
                        key,
                        g.event.clone(),
                        g.count,
                        now.saturating_duration_since(since),
                    ));
                    g.count = 0;
                }
            }
        }
        out
    }

    /// Whether any group is firing now.
    pub fn any_firing(&self) -> bool {
        !self.deadlines.is_empty()
    }

    /// Firing groups with since when, for status.
    pub fn firing(&self) -> impl Iterator<Item = (&Arc<str>, Instant)> {
        // A firing group is one with a resolve due: no walk over every group.
        self.deadlines
            .iter()
            .filter_map(|(_, k)| Some((k, self.groups.get(k)?.firing_since?)))
    }

    /// The keys of the firing groups.
    pub fn firing_keys(&self) -> Vec<Arc<str>> {
        self.firing().map(|(k, _)| Arc::clone(k)).collect()
    }

    /// The last matching event of a group.
    pub fn event(&self, key: &str) -> Option<Arc<Event>> {
        self.groups.get(key).and_then(|g| g.event.clone())
    }

    /// What to store for a group: its firing, or nothing (`None` removes a stored one).
    pub fn save(&self, key: &str, now: Instant, wall: SystemTime) -> Option<SavedEpisode> {
        let g = self.groups.get(key)?;
        let since = g.firing_since?;
        let ago = |t: Instant| wall - now.saturating_duration_since(t);
        Some(SavedEpisode {
            episode: SavedFiringEpisode {
                since: ago(since),
                last_match: ago(g.last_match),
                count: g.count,
            },
        })
    }

    /// Takes up a firing group saved by an earlier run (it resolves on time, or at once if
    /// its `resolve_after` passed while hark was stopped).
    pub fn restore(
        &mut self,
        config: &RuleConfig,
        key: Arc<str>,
        saved: &SavedFiringEpisode,
        event: Arc<Event>,
        now: Instant,
        wall: SystemTime,
    ) {
        let ago = |t: SystemTime| wall.duration_since(t).unwrap_or_default();
        // An Instant cannot go back before the machine booted: what is older is "now".
        let back = |t: SystemTime| now.checked_sub(ago(t)).unwrap_or(now);
        let since = back(saved.since);
        let last = back(saved.last_match);
        // Firing: not among the groups that may be dropped for room.
        let seen = self.next_seen;
        self.next_seen += 1;
        let due = config
            .resolve_after
            .map(|ra| now + ra.saturating_sub(ago(saved.last_match)));
        if let Some(due) = due {
            self.deadlines.insert((due, Arc::clone(&key)));
        }
        self.groups.insert(
            key,
            Episode {
                hits: VecDeque::new(),
                firing_since: Some(since),
                last_match: last,
                count: saved.count,
                watch: Arc::clone(&event.watch),
                event: Some(event),
                gate: EdgeGate::new(None, config.cooldown, config.trigger_limit),
                due,
                seen,
            },
        );
    }
}
