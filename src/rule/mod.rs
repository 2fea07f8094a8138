//! The rule engine: conditions over events, and what a match turns into. Rules read
//! events and produce firings; how a firing's actions run is not their business.

mod condition;
mod edge;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub use condition::{cel_fields, to_cel, Evaluator, Outcome};
pub use edge::{EdgeGate, Verdict};

use crate::config::{Config, RuleConfig};
use crate::event::{display_lossy, Event, Firing, FiringState};

struct Rule {
    config: RuleConfig,
    name: Arc<str>,
    actions: Vec<Arc<str>>,
    severity: Arc<str>,
    labels: Arc<BTreeMap<String, String>>,
    summary: Option<Arc<str>>,
    gate: EdgeGate,
    /// Evaluation errors already logged, so a field missing from every event is said once.
    logged_errors: HashSet<String>,
}

pub struct Engine {
    rules: Vec<Rule>,
    by_watch: HashMap<String, Vec<usize>>,
    evaluator: Evaluator,
}

impl Engine {
    pub fn new(config: &Config) -> Self {
        let mut rules = Vec::new();
        let mut by_watch: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in config.rules.values().enumerate() {
            for w in &r.watches {
                by_watch.entry(w.clone()).or_default().push(i);
            }
            rules.push(Rule {
                name: Arc::from(r.name.as_str()),
                actions: r.then.iter().map(|a| Arc::from(a.as_str())).collect(),
                severity: Arc::from(r.severity.as_str()),
                labels: Arc::new(r.labels.clone()),
                summary: r.summary.as_deref().map(Arc::from),
                gate: EdgeGate::new(r.debounce, r.cooldown, r.trigger_limit),
                config: r.clone(),
                logged_errors: HashSet::new(),
            });
        }
        Engine {
            rules,
            by_watch,
            evaluator: Evaluator::default(),
        }
    }

    /// Evaluates every rule that hears the event's watch; returns what fires now.
    pub fn on_event(&mut self, event: Arc<Event>, now: Instant) -> Vec<Firing> {
        let Some(indices) = self.by_watch.get(&*event.watch) else {
            return Vec::new();
        };
        let fields = cel_fields(&event.to_json());
        let mut out = Vec::new();
        for &i in indices {
            let rule = &mut self.rules[i];
            let outcome = match &rule.config.when {
                None => Outcome::Match,
                Some(c) => self.evaluator.eval(&c.program, &fields),
            };
            match outcome {
                Outcome::Match => {}
                Outcome::NoMatch => {
                    tracing::debug!(rule = %rule.name, watch = %event.watch, kind = event.kind().unwrap_or(""), "no match");
                    continue;
                }
                Outcome::Error(e) => {
                    if rule.logged_errors.len() < 64 && rule.logged_errors.insert(e.clone()) {
                        tracing::warn!(rule = %rule.name, watch = %event.watch, "condition not met: {e} (said once per rule)");
                    }
                    continue;
                }
            }
            let verdict = rule.gate.on_match(&event, now);
            if let Some(f) = rule.verdict(&event, verdict) {
                out.push(f);
            }
        }
        out
    }

    /// The next moment `on_tick` has work: the end of a debounce window.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rules.iter().filter_map(|r| r.gate.deadline()).min()
    }

    /// Fires the debounced bursts whose window has ended.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Firing> {
        let mut out = Vec::new();
        for rule in &mut self.rules {
            if let Some((event, verdict)) = rule.gate.on_tick(now) {
                if let Some(f) = rule.verdict(&event, verdict) {
                    out.push(f);
                }
            }
        }
        out
    }
}

impl Rule {
    fn verdict(&mut self, event: &Arc<Event>, verdict: Verdict) -> Option<Firing> {
        let path = event
            .fields
            .get("path")
            .and_then(|p| p.as_str())
            .map(display_lossy)
            .unwrap_or_default();
        match verdict {
            Verdict::Fire { count } => {
                tracing::info!(rule = %self.name, watch = %event.watch, kind = event.kind().unwrap_or(""), path = ?path, count, "rule fired");
                Some(Firing {
                    rule: Arc::clone(&self.name),
                    state: FiringState::Firing,
                    event: Arc::clone(event),
                    actions: self.actions.clone(),
                    severity: Arc::clone(&self.severity),
                    labels: Arc::clone(&self.labels),
                    summary: self.summary.clone(),
                    count,
                    time: SystemTime::now(),
                    duration: std::time::Duration::ZERO,
                })
            }
            Verdict::Debounced => {
                tracing::debug!(rule = %self.name, watch = %event.watch, path = ?path, "matched; folded into the debounce window");
                None
            }
            Verdict::CoolingDown => {
                tracing::debug!(rule = %self.name, watch = %event.watch, path = ?path, "matched; cooling down");
                None
            }
            Verdict::TriggerLimited { first_hit } => {
                if first_hit {
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
