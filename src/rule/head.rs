//! What every rule has whatever its mechanism: its name, its actions, its labels, and the
//! firing it hands them. The mechanisms (gate, counted, stateful) decide *when*; the head
//! says *what*.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::edge::Verdict;
use super::state::{Hold, Step};
use crate::config::RuleConfig;
use crate::event::{display_lossy, human_duration, Event, Firing, FiringState};

pub(super) struct Head {
    pub config: RuleConfig,
    pub name: Arc<str>,
    then: Vec<Arc<str>>,
    resolve: Vec<Arc<str>>,
    severity: Arc<str>,
    labels: Arc<BTreeMap<String, String>>,
    summary: Option<Arc<str>>,
}

impl Head {
    pub fn new(r: &RuleConfig) -> Head {
        let names = |list: &[String]| list.iter().map(|a| Arc::from(a.as_str())).collect();
        Head {
            name: Arc::from(r.name.as_str()),
            then: names(&r.then),
            resolve: names(&r.resolve),
            severity: Arc::from(r.severity.as_str()),
            labels: Arc::new(r.labels.clone()),
            summary: r.summary.as_deref().map(Arc::from),
            config: r.clone(),
        }
    }

    pub fn firing(
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

    /// What a state machine's step hands the actions, said in the log.
    pub fn state_step(
        &self,
        event: &Arc<Event>,
        step: &Step,
        blocker: Option<&str>,
    ) -> Option<Firing> {
        let (name, watch) = (&self.name, &event.watch);
        match step {
            Step::Fire { count } => {
                tracing::info!(rule = %name, watch = %watch, count, "rule firing");
                Some(self.firing(event, FiringState::Firing, *count, Duration::ZERO))
            }
            Step::Repeat { count, duration } => {
                tracing::info!(rule = %name, watch = %watch, count, firing_for = %human_duration(*duration), "rule still firing: repeating its actions");
                Some(self.firing(event, FiringState::Firing, *count, *duration))
            }
            Step::Resolve { count, duration } => {
                tracing::info!(rule = %name, watch = %watch, firing_for = %human_duration(*duration), "rule resolved");
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

    /// What an edge gate's verdict hands the actions, said in the log.
    pub fn edge_verdict(&self, event: &Arc<Event>, verdict: &Verdict) -> Option<Firing> {
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
                    tracing::info!(rule = %self.name, watch = %event.watch, path = ?path, "matched inside the cooldown: held, fires once when it ends in {}", human_duration(*left));
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
