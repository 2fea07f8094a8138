//! The rule engine: conditions over events, and what a match turns into. Rules read
//! events and produce firings; how a firing's actions run is not their business.
//!
//! Edge events (a file changed) go through each rule's `EdgeGate`; state events (a
//! check's latest result) through one `StateMachine` per rule and watch, so a rule over
//! two endpoints alerts for each on its own.

mod condition;
mod edge;
mod episode;
mod explain;
mod lru;
mod persist;
mod rows;
mod silence;
mod state;
mod verdict;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use condition::{cel_fields, to_cel, Evaluator, EventVars, Outcome, SubValue};
pub use edge::{EdgeGate, Ended, Verdict};
pub use explain::{Blocker, Explanation, SeenEvent, WatchState};
pub use silence::Silences;
pub use state::{Hold, Progress, Saved, SavedFiring, StateMachine, Step};
pub use verdict::{Decision, RuleVerdict, TickNote};

use crate::config::{Config, RuleConfig};
use crate::event::{display_lossy, Event, Firing, FiringState};

struct Rule {
    config: RuleConfig,
    name: Arc<str>,
    then: Vec<Arc<str>>,
    resolve: Vec<Arc<str>>,
    severity: Arc<str>,
    labels: Arc<BTreeMap<String, String>>,
    summary: Option<Arc<str>>,
    gate: EdgeGate,
    /// One state machine per watch whose state events this rule has seen.
    states: HashMap<Arc<str>, StateMachine>,
    /// Indices of the rules named in `unless`.
    unless: Vec<usize>,
    /// Evaluation errors already logged, so a field missing from every event is said once.
    logged_errors: HashSet<String>,
    /// The last events it heard, for `hark explain`.
    recent: VecDeque<explain::Seen>,
    /// Per group, on event watches counted (`times` + `within`), grouped (`group_by`) or
    /// resolved (`resolve_after`).
    episodes: episode::Episodes,
    /// With `group_by` over state watches: the groups (state keys) by when last seen.
    state_groups: lru::Recency,
}

/// One row of `hark status`: a rule's state for one watch.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    pub rule: Arc<str>,
    pub watch: Option<Arc<str>>,
    /// The group of a rule with `group_by`.
    pub group: Option<Arc<BTreeMap<String, String>>>,
    /// How many groups the rule holds, with `group_by`.
    pub groups: Option<usize>,
    /// `ok`, `pending` or `firing`.
    pub state: &'static str,
    pub since: Option<Instant>,
}

pub struct Engine {
    rules: Vec<Rule>,
    by_watch: HashMap<String, Vec<usize>>,
    evaluator: Evaluator,
    /// (rule, watch) states changed since the last `take_changes`.
    dirty: BTreeSet<(usize, Arc<str>)>,
    /// (rule, group) episodes whose firing changed since the last `take_changes`.
    dirty_groups: BTreeSet<(usize, Arc<str>)>,
    /// The states of rules a reload removed, by name, kept for `RETIRED_GRACE` in case
    /// the rule comes back (a file rewritten in place, a config manager's run).
    retired: HashMap<Arc<str>, (States, Instant)>,
    /// What the last `on_tick` decided of windows that ended, for the live trace.
    ticked: Vec<TickNote>,
}

/// One rule's state machines, by watch.
type States = HashMap<Arc<str>, StateMachine>;

pub use crate::event::GROUP_MARK;

/// How long the states of a rule a reload removed are kept for its return.
pub const RETIRED_GRACE: Duration = Duration::from_secs(600);

impl Engine {
    pub fn new(config: &Config) -> Self {
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
            let names = |list: &[String]| list.iter().map(|a| Arc::from(a.as_str())).collect();
            rules.push(Rule {
                name: Arc::from(r.name.as_str()),
                then: names(&r.then),
                resolve: names(&r.resolve),
                severity: Arc::from(r.severity.as_str()),
                labels: Arc::new(r.labels.clone()),
                summary: r.summary.as_deref().map(Arc::from),
                gate: EdgeGate::new(r.debounce, r.cooldown, r.trigger_limit)
                    .dropping_in_cooldown(r.drop_in_cooldown),
                states: HashMap::new(),
                unless: r
                    .unless
                    .iter()
                    .filter_map(|u| index.get(u.as_str()).copied())
                    .collect(),
                config: r.clone(),
                logged_errors: HashSet::new(),
                recent: VecDeque::new(),
                episodes: episode::Episodes::default(),
                state_groups: lru::Recency::default(),
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
            dirty: BTreeSet::new(),
            dirty_groups: BTreeSet::new(),
            retired: HashMap::new(),
            ticked: Vec::new(),
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
            let rule = &mut self.rules[i];
            let outcome = match &rule.config.when {
                None => Outcome::Match,
                Some(c) => self.evaluator.eval_in(&c.program, &ctx),
            };
            let (verdict, firing) = match outcome {
                Outcome::Error(e) => {
                    if rule.logged_errors.len() < 64 && rule.logged_errors.insert(e.clone()) {
                        tracing::warn!(rule = %rule.name, watch = %event.watch, "condition cannot be evaluated: {e} (said once per rule)");
                    }
                    (RuleVerdict::Error(e), None)
                }
                Outcome::NoMatch if event.edge => (RuleVerdict::NoMatch, None),
                Outcome::Match if event.edge => match quiet {
                    Some(blocker) => {
                        tracing::debug!(rule = %rule.name, watch = %event.watch, blocker = %blocker, "matched; suppressed by `unless`");
                        (RuleVerdict::Suppressed(blocker), None)
                    }
                    None if rule.counts_edges() => {
                        let (verdict, firing, changed) = rule.grouped_edge(&event, now);
                        if let Some(key) = changed {
                            self.dirty_groups.insert((i, key));
                        }
                        (verdict, firing)
                    }
                    None => {
                        let verdict = rule.gate.on_match(&event, now);
                        let firing = rule.edge_verdict(&event, &verdict);
                        (RuleVerdict::Edge(verdict), firing)
                    }
                },
                matched => {
                    // One state machine per watch, and per group with `group_by`.
                    let (watch, group) = match rule.group_of(&event) {
                        Ok(Some(g)) => (
                            Arc::from(format!("{}{GROUP_MARK}{}", event.watch, g.key).as_str()),
                            Some(g),
                        ),
                        Ok(None) => (Arc::clone(&event.watch), None),
                        Err(e) => {
                            out.push(Decision::error(&rule.name, e));
                            continue;
                        }
                    };
                    if group.is_some() && !rule.states.contains_key(&watch) {
                        match rule.room_for_a_group() {
                            Ok(dropped) => self.dirty.extend(dropped.into_iter().map(|k| (i, k))),
                            Err(e) => {
                                out.push(Decision::error(&rule.name, e));
                                continue;
                            }
                        }
                    }
                    let machine = rule
                        .states
                        .entry(Arc::clone(&watch))
                        .or_insert_with(|| new_machine(&rule.config));
                    let step = machine.on_sample(matched == Outcome::Match, quiet.is_some(), now);
                    if group.is_some() {
                        rule.state_groups.saw(&watch, machine.is_firing());
                    }
                    if matches!(
                        step,
                        Step::Fire { .. } | Step::Repeat { .. } | Step::Resolve { .. }
                    ) {
                        self.dirty.insert((i, watch));
                    }
                    let mut firing = rule.state_step(&event, &step, quiet.as_deref());
                    if let Some(f) = &mut firing {
                        f.group = group;
                    }
                    (RuleVerdict::State(step), firing)
                }
            };
            explain::remember(
                &mut self.rules[i].recent,
                explain::Seen {
                    event: Arc::clone(&event),
                    verdict: verdict.clone(),
                },
            );
            out.push(Decision {
                rule: Arc::clone(&self.rules[i].name),
                verdict,
                firing,
            });
        }
        out
    }

    /// The firing (or resolve) rule `name` would hand its actions for this event; changes
    /// nothing. For `hark test`.
    pub fn preview(&self, name: &str, event: &Arc<Event>, state: FiringState) -> Option<Firing> {
        let rule = self.rules.iter().find(|r| &*r.name == name)?;
        let mut f = rule.firing(event, state, 1, Duration::ZERO);
        f.group = rule.group_of(event).ok().flatten();
        Some(f)
    }

    /// The first rule named in rule `i`'s `unless` that is firing.
    fn blocked_by(&self, i: usize) -> Option<Arc<str>> {
        self.rules[i]
            .unless
            .iter()
            .map(|&j| &self.rules[j])
            .find(|r| r.is_firing())
            .map(|r| Arc::clone(&r.name))
    }

    /// Names of the rules firing now, with since when.
    pub fn firing(&self) -> Vec<(Arc<str>, Instant)> {
        self.rules
            .iter()
            .filter_map(|r| {
                let since = r
                    .states
                    .values()
                    .filter_map(StateMachine::firing_since)
                    .chain(r.episodes.firing().map(|(_, s)| s))
                    .min()?;
                Some((Arc::clone(&r.name), since))
            })
            .collect()
    }

    /// Each rule's state for each watch it has seen a state event of (a rule that has
    /// seen none, or hears only edge events, is one `ok` row without a watch); with
    /// `group_by`, its firing groups and the most recently seen.
    pub fn status(&self, now: Instant) -> Vec<RuleStatus> {
        let mut out = Vec::new();
        for r in &self.rules {
            let groups = (!r.config.group_by.is_empty()).then(|| r.groups_held());
            for row in r.rows(now) {
                out.push(RuleStatus {
                    rule: Arc::clone(&r.name),
                    watch: row.watch,
                    group: row.group,
                    groups,
                    state: row.state,
                    since: row.since,
                });
            }
        }
        out
    }

    /// The next moment `on_tick` has work: the end of a debounce window.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rules
            .iter()
            .flat_map(|r| [r.gate.deadline(), r.episodes.deadline()])
            .flatten()
            .min()
    }

    /// What the windows that ended at the last ticks came to, for the live trace.
    pub fn take_tick_notes(&mut self) -> Vec<TickNote> {
        std::mem::take(&mut self.ticked)
    }

    /// Fires the debounced bursts whose window has ended.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Firing> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter_mut().enumerate() {
            while let Some((ended, burst, verdict)) = rule.gate.on_tick(now) {
                self.ticked
                    .push(TickNote::of(&rule.name, &burst.event, ended, &verdict));
                if let Some(mut f) = rule.edge_verdict(&burst.event, &verdict) {
                    f.last = Some(burst.last);
                    f.kinds = burst.kinds;
                    out.push(f);
                }
            }
            // Groups quiet for `resolve_after`: their firing ends.
            for (key, event, count, duration) in rule.episodes.due(now) {
                let event = event.unwrap_or_else(|| rule.group_event(&key));
                tracing::info!(rule = %rule.name, group = %key, firing_for = %crate::event::human_duration(duration), "rule resolved");
                let mut f = rule.firing(&event, FiringState::Resolved, count, duration);
                f.group = rule.group_of(&event).ok().flatten();
                out.push(f);
                self.dirty_groups.insert((i, key));
            }
        }
        out
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

fn new_machine(r: &RuleConfig) -> StateMachine {
    StateMachine::new(r.threshold, r.repeat, r.cooldown)
}

impl Rule {
    fn is_firing(&self) -> bool {
        self.states.values().any(StateMachine::is_firing) || self.episodes.any_firing()
    }

    fn firing(
        &self,
        event: &Arc<Event>,
        state: FiringState,
        count: u64,
        duration: Duration,
    ) -> Firing {
        Firing {
            rule: Arc::clone(&self.name),
            state,
            event: Arc::clone(event),
            actions: match state {
                FiringState::Firing => self.then.clone(),
                FiringState::Resolved => self.resolve.clone(),
            },
            severity: Arc::clone(&self.severity),
            labels: Arc::clone(&self.labels),
            summary: self.summary.clone(),
            count,
            last: None,
            kinds: Vec::new(),
            time: SystemTime::now(),
            duration,
            group: None,
            resolves: !event.edge || self.config.resolve_after.is_some(),
        }
    }

    fn state_step(&self, event: &Arc<Event>, step: &Step, blocker: Option<&str>) -> Option<Firing> {
        let (name, watch) = (&self.name, &event.watch);
        match step {
            Step::Fire { count } => {
                tracing::info!(rule = %name, watch = %watch, count, "rule firing");
                Some(self.firing(event, FiringState::Firing, *count, Duration::ZERO))
            }
            Step::Repeat { count, duration } => {
                tracing::info!(rule = %name, watch = %watch, count, firing_for = %crate::event::human_duration(*duration), "rule still firing: repeating its actions");
                Some(self.firing(event, FiringState::Firing, *count, *duration))
            }
            Step::Resolve { count, duration } => {
                tracing::info!(rule = %name, watch = %watch, firing_for = %crate::event::human_duration(*duration), "rule resolved");
                Some(self.firing(event, FiringState::Resolved, *count, *duration))
            }
            Step::Held(Hold::Suppressed) => {
                tracing::debug!(rule = %name, watch = %watch, blocker = blocker.unwrap_or(""), "threshold met; suppressed by `unless`");
                None
            }
            other => {
                tracing::debug!(rule = %name, watch = %watch, step = ?other, "sample");
                None
            }
        }
    }

    fn edge_verdict(&mut self, event: &Arc<Event>, verdict: &Verdict) -> Option<Firing> {
        let path = event
            .fields
            .get("path")
            .and_then(|p| p.as_str())
            .map(display_lossy)
            .unwrap_or_default();
        match verdict {
            Verdict::Fire { count } => {
                tracing::info!(rule = %self.name, watch = %event.watch, kind = event.kind(), path = ?path, count, "rule fired");
                Some(self.firing(event, FiringState::Firing, *count, Duration::ZERO))
            }
            Verdict::Debounced => {
                tracing::debug!(rule = %self.name, watch = %event.watch, path = ?path, "matched; folded into the debounce window");
                None
            }
            Verdict::Held { held, left } => {
                if *held == 1 {
                    tracing::info!(rule = %self.name, watch = %event.watch, path = ?path, "matched inside the cooldown: held, fires once when it ends in {}", crate::event::human_duration(*left));
                }
                None
            }
            Verdict::CoolingDown => {
                tracing::debug!(rule = %self.name, watch = %event.watch, path = ?path, "matched; cooling down (during_cooldown = \"drop\")");
                None
            }
            Verdict::TriggerLimited { first_hit } => {
                if *first_hit {
                    if let Some(l) = self.config.trigger_limit {
                        tracing::warn!(
                            rule = %self.name, watch = %event.watch,
                            "trigger limit hit: fired {} times within {}; dropping matches until the rate falls \
                             (an action changing what its own rule watches?)",
                            l.burst, humantime::format_duration(l.interval)
                        );
                    }
                }
                None
            }
        }
    }
}

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
