//! The rule engine: conditions over events, and what a match turns into. Rules read
//! events and produce firings; how a firing's actions run is not their business.
//!
//! Each rule evaluates its condition and hands the outcome to one of its mechanisms
//! (mechanism.rs, one file per variant): edge events (a file changed) to `Gated` or
//! `Counted`, state events (a check's latest result) to `Stateful`, one state machine per
//! watch, so a rule over two endpoints alerts for each on its own.

mod absence;
mod awaited;
mod condition;
mod counted;
mod edge;
mod episode;
mod expected;
mod explain;
mod gated;
mod groups;
mod head;
mod judged;
mod lru;
mod mechanism;
mod persist;
mod rows;
mod schedule;
mod silence;
mod state;
mod stateful;
mod verdict;
mod wall;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use condition::{cel_fields, to_cel, Evaluator, EventVars, Outcome, SubValue};
pub use edge::{EdgeGate, Ended, Verdict};
pub use explain::{Blocker, Explanation, SeenEvent, WatchState};
pub use silence::{Note as SilenceNote, Silences};
pub use state::{Hold, Progress, Saved, SavedFiring, StateMachine, Step};
pub use verdict::{Decision, RuleVerdict, TickNote};
pub use wall::{WallClock, CLOCK_START_VAR};

use crate::config::Config;
use crate::event::{Event, Firing, FiringState};
use head::Head;
use mechanism::{Heard, Judged, Mechanism, Setting, Ticked};

struct Rule {
    head: Head,
    /// What its edge events (a change, a line, a process start) come to.
    edges: Mechanism,
    /// What its state events (a check's latest result) come to.
    states: Mechanism,
    /// Indices of the rules named in `unless`.
    unless: Vec<usize>,
    /// Evaluation errors already logged, so a field missing from every event is said once.
    logged_errors: HashSet<String>,
    /// The last events it heard, for `hark explain`.
    recent: VecDeque<explain::Seen>,
}

/// One row of `hark status`: a rule's state for one watch.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    pub rule: Arc<str>,
    pub watch: Option<Arc<str>>,
    /// The group of a rule with `group_by`.
    pub group: Option<Arc<std::collections::BTreeMap<String, String>>>,
    /// How many groups the rule holds, with `group_by`.
    pub groups: Option<usize>,
    /// `ok`, `pending` or `firing`.
    pub state: &'static str,
    pub since: Option<Instant>,
    /// When a match is due by, for a rule that expects one.
    pub due: Option<std::time::SystemTime>,
}

pub struct Engine {
    rules: Vec<Rule>,
    by_watch: HashMap<String, Vec<usize>>,
    evaluator: Evaluator,
    /// (rule, store key after `rule/`) of states changed since the last `take_changes`.
    dirty: BTreeSet<(usize, Arc<str>)>,
    /// The state mechanisms of rules a reload removed, by name, kept for `RETIRED_GRACE`
    /// in case the rule comes back (a file rewritten in place, a config manager's run).
    retired: HashMap<Arc<str>, (Mechanism, Instant)>,
    /// What the last `on_tick` decided of windows that ended, for the live trace.
    ticked: Vec<TickNote>,
    /// The host and wall clock the mechanisms are made with.
    setting: Setting,
}

pub use crate::event::GROUP_MARK;

/// How long the states of a rule a reload removed are kept for its return.
pub const RETIRED_GRACE: Duration = Duration::from_secs(600);

impl Engine {
    pub fn new(config: &Config) -> Self {
        Engine::with_clock(config, WallClock::default())
    }

    /// An engine whose rules read the wall clock `wall` (cron schedules).
    pub fn with_clock(config: &Config, wall: WallClock) -> Self {
        let setting = Setting {
            host: Arc::from(config.daemon.host.as_str()),
            wall,
        };
        let mut dirty = BTreeSet::new();
        let mut rules = Vec::new();
        let mut by_watch: HashMap<String, Vec<usize>> = HashMap::new();
        let index: HashMap<&str, usize> = config
            .rules
            .keys()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        for (i, r) in config.rules.values().enumerate() {
            for w in &r.watches {
                by_watch.entry(w.clone()).or_default().push(i);
            }
            let head = Head::new(r);
            let edges = Mechanism::for_edges(&head, &setting);
            // A window that starts at the first load is stored at once.
            dirty.extend(edges.start_keys().into_iter().map(|k| (i, Arc::from(k))));
            rules.push(Rule {
                head,
                edges,
                states: Mechanism::for_states(r),
                unless: r
                    .unless
                    .iter()
                    .filter_map(|u| index.get(u.as_str()).copied())
                    .collect(),
                logged_errors: HashSet::new(),
                recent: VecDeque::new(),
            });
        }
        // A rule is evaluated after the rules it names in `unless`, so when a cause and
        // its dependent hear the same event, the cause's firing already silences it.
        let depth = unless_depths(&rules);
        for list in by_watch.values_mut() {
            list.sort_by_key(|&i| (depth[i], i));
        }
        Engine {
            rules,
            by_watch,
            evaluator: Evaluator::default(),
            dirty,
            retired: HashMap::new(),
            ticked: Vec::new(),
            setting,
        }
    }

    /// Rules a reload removed whose states are kept for their return.
    pub fn retired_rules(&self) -> impl Iterator<Item = &str> {
        self.retired.keys().map(|k| &**k)
    }

    /// Evaluates every rule that hears the event's watch; returns what fires now.
    pub fn on_event(&mut self, event: Arc<Event>, now: Instant) -> Vec<Firing> {
        self.decide(event, now)
            .into_iter()
            .filter_map(|d| d.firing)
            .collect()
    }

    /// Every rule's verdict on the event, with what fires.
    pub fn decide(&mut self, event: Arc<Event>, now: Instant) -> Vec<Decision> {
        let Some(indices) = self.by_watch.get(&*event.watch).cloned() else {
            return Vec::new();
        };
        // One set of variables for every rule of the watch; fields become CEL values
        // only as conditions read them.
        let vars = EventVars::new(&event);
        let ctx = self.evaluator.bind(&vars);
        let mut out = Vec::with_capacity(indices.len());
        for i in indices {
            let quiet = self.blocked_by(i);
            let Rule {
                head,
                edges,
                states,
                logged_errors,
                recent,
                ..
            } = &mut self.rules[i];
            let outcome = match &head.config.when {
                None => Outcome::Match,
                Some(c) => self.evaluator.eval_in(&c.program, &ctx),
            };
            let mechanism = if event.edge || edges.hears_all() {
                edges
            } else {
                states
            };
            let judged = match outcome {
                Outcome::Error(e) => condition_error(head, logged_errors, &event, e),
                matched => {
                    let heard = Heard {
                        event: &event,
                        matched: matched == Outcome::Match,
                        quiet,
                        now,
                    };
                    mechanism.judge(head, heard)
                }
            };
            self.dirty
                .extend(judged.changed.into_iter().map(|k| (i, k)));
            explain::remember(
                recent,
                explain::Seen {
                    event: Arc::clone(&event),
                    verdict: judged.verdict.clone(),
                },
            );
            out.push(Decision {
                rule: Arc::clone(&head.name),
                verdict: judged.verdict,
                firing: judged.firing,
            });
        }
        out
    }

    /// The firing (or resolve) rule `name` would hand its actions for this event; changes
    /// nothing. For `hark test`.
    pub fn preview(&self, name: &str, event: &Arc<Event>, state: FiringState) -> Option<Firing> {
        let rule = self.rules.iter().find(|r| &*r.head.name == name)?;
        let mut f = rule.head.firing(event, state, 1, Duration::ZERO);
        f.group = rule.head.group_of(event).ok().flatten();
        Some(f)
    }

    /// The first rule named in rule `i`'s `unless` that is firing.
    fn blocked_by(&self, i: usize) -> Option<Arc<str>> {
        self.rules[i]
            .unless
            .iter()
            .map(|&j| &self.rules[j])
            .find(|r| r.is_firing())
            .map(|r| Arc::clone(&r.head.name))
    }

    /// Names of the rules firing now, with since when.
    pub fn firing(&self) -> Vec<(Arc<str>, Instant)> {
        self.rules
            .iter()
            .filter_map(|r| {
                let since = [r.states.firing_since(), r.edges.firing_since()]
                    .into_iter()
                    .flatten()
                    .min()?;
                Some((Arc::clone(&r.head.name), since))
            })
            .collect()
    }

    /// Each rule's state for each watch it has seen a state event of (a rule that has
    /// seen none, or hears only edge events, is one `ok` row without a watch); with
    /// `group_by`, its firing groups and the most recently seen.
    pub fn status(&self, now: Instant) -> Vec<RuleStatus> {
        let mut out = Vec::new();
        for r in &self.rules {
            let groups = (!r.head.config.group_by.is_empty()).then(|| r.groups().held);
            for row in r.rows(now) {
                out.push(RuleStatus {
                    rule: Arc::clone(&r.head.name),
                    watch: row.watch,
                    group: row.group,
                    groups,
                    state: row.state,
                    since: row.since,
                    due: row.due,
                });
            }
        }
        out
    }

    /// The next moment `on_tick` has work: the end of a debounce window, a resolve due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rules
            .iter()
            .flat_map(|r| [r.edges.deadline(), r.states.deadline()])
            .flatten()
            .min()
    }

    /// For each rule that expects a match, the nearest time one is due by.
    pub fn deadlines(&self) -> Vec<(Arc<str>, std::time::SystemTime)> {
        self.rules
            .iter()
            .filter_map(|r| Some((Arc::clone(&r.head.name), r.edges.next_due()?)))
            .collect()
    }

    /// What the windows that ended at the last ticks came to, for the live trace.
    pub fn take_tick_notes(&mut self) -> Vec<TickNote> {
        std::mem::take(&mut self.ticked)
    }

    /// Fires the debounced bursts whose window has ended and resolves groups gone quiet.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Firing> {
        let mut t = Ticked::default();
        for (i, rule) in self.rules.iter_mut().enumerate() {
            rule.edges.tick(&rule.head, now, &mut t);
            rule.states.tick(&rule.head, now, &mut t);
            self.dirty.extend(t.changed.drain(..).map(|k| (i, k)));
        }
        self.ticked.append(&mut t.notes);
        t.firings
    }
}

/// For each rule, the length of the longest chain of `unless` below it (0 for none). A
/// cycle (a rule that names, through others, itself) is cut where it closes.
fn unless_depths(rules: &[Rule]) -> Vec<usize> {
    fn depth(i: usize, rules: &[Rule], memo: &mut [Option<usize>], visiting: &mut [bool]) -> usize {
        if let Some(d) = memo[i] {
            return d;
        }
        if visiting[i] {
            return 0;
        }
        visiting[i] = true;
        let d = rules[i]
            .unless
            .iter()
            .map(|&j| 1 + depth(j, rules, memo, visiting))
            .max()
            .unwrap_or(0);
        visiting[i] = false;
        memo[i] = Some(d);
        d
    }
    let mut memo = vec![None; rules.len()];
    let mut visiting = vec![false; rules.len()];
    (0..rules.len())
        .map(|i| depth(i, rules, &mut memo, &mut visiting))
        .collect()
}

/// A condition that cannot be evaluated: an error, logged once per rule and message.
fn condition_error(head: &Head, logged: &mut HashSet<String>, event: &Event, e: String) -> Judged {
    if logged.len() < 64 && logged.insert(e.clone()) {
        tracing::warn!(rule = %head.name, watch = %event.watch, "condition cannot be evaluated: {e} (said once per rule)");
    }
    Judged::of(RuleVerdict::Error(e))
}

impl Rule {
    fn is_firing(&self) -> bool {
        self.states.is_firing() || self.edges.is_firing()
    }

    /// The mechanism holding the state stored under `key` (after `rule/`): groups of edge
    /// events are stored as `␞group`, states as `watch` or `watch␞group`.
    fn mechanism_of_key(&mut self, key: &str) -> &mut Mechanism {
        if key.starts_with(GROUP_MARK) {
            &mut self.edges
        } else {
            &mut self.states
        }
    }

    /// Its groups, over both mechanisms.
    fn groups(&self) -> mechanism::GroupCount {
        let (a, b) = (self.states.groups(), self.edges.groups());
        mechanism::GroupCount {
            held: a.held + b.held,
            dropped: a.dropped + b.dropped,
            refused: a.refused + b.refused,
        }
    }
}

#[cfg(test)]
mod expected_tests;
#[cfg(test)]
mod groups_tests;

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;
    use std::time::SystemTime;

    use crate::config::Config;
    use crate::event::Event;

    /// A configuration loaded from `text`, with the directory its file is in.
    pub fn load(text: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hark.toml");
        std::fs::write(&file, text).unwrap();
        let config = Config::load(&[file]).unwrap_or_else(|e| panic!("{e:?}"));
        (dir, config)
    }

    /// An event of `watch` with these fields: an edge event or a state sample.
    pub fn event(
        watch: &str,
        source: &'static str,
        edge: bool,
        fields: &[(&str, serde_json::Value)],
    ) -> Arc<Event> {
        Arc::new(Event {
            watch: Arc::from(watch),
            source,
            time: SystemTime::now(),
            host: Arc::from("h"),
            edge,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            cursor: None,
        })
    }
}
