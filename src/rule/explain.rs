//! `hark explain RULE`: why a rule is in its state. Its condition with the value of each
//! sub-expression on the last events it saw, its counters and timers, and what it waits
//! for. (Its silence and last actions are the daemon's to add.)

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::condition::{cel_fields, SubValue};
use super::{Engine, Rule, RuleVerdict};
use crate::config::{Expect, Expectation, Threshold};
use crate::event::{event_json_shown, group_text, rfc3339, Event};

/// Events kept per rule for `hark explain`.
pub(super) const KEPT_EVENTS: usize = 5;

/// An event a rule heard, and what it made of it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub event: Arc<Event>,
    pub verdict: RuleVerdict,
}

/// Keeps the last `KEPT_EVENTS`.
pub(super) fn remember(recent: &mut VecDeque<Seen>, seen: Seen) {
    if recent.len() == KEPT_EVENTS {
        recent.pop_front();
    }
    recent.push_back(seen);
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Explanation {
    pub rule: String,
    pub watches: Vec<String>,
    /// None: the rule matches every event of its watches.
    pub condition: Option<String>,
    pub threshold: String,
    /// debounce, cooldown, repeat, trigger limit, in words.
    pub settings: Vec<String>,
    pub unless: Vec<Blocker>,
    /// `Some("")` when silenced with no end.
    pub silenced_until: Option<String>,
    pub states: Vec<WatchState>,
    /// The last events the rule heard, oldest first.
    pub events: Vec<SeenEvent>,
    /// Its last action outcomes, oldest first.
    pub actions: Vec<crate::trace::Line>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Blocker {
    pub rule: String,
    pub firing: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchState {
    /// None for a rule that has seen no state event (edge rules).
    pub watch: Option<String>,
    /// The group of a rule with `group_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<std::collections::BTreeMap<String, String>>,
    /// `ok`, `pending` or `firing`.
    pub state: String,
    /// Counters and timers in words.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeenEvent {
    pub time: String,
    pub watch: String,
    pub verdict: String,
    pub fields: serde_json::Value,
    /// Each sub-expression of the condition with its value on this event.
    pub values: Vec<SubValue>,
}

impl Engine {
    /// Why rule `name` is in its state, as of `now`; None if there is no such rule.
    pub fn explain(&self, name: &str, now: Instant) -> Option<Explanation> {
        let rule = self.rules.iter().find(|r| &*r.head.name == name)?;
        let c = &rule.head.config;
        // Debounce, cooldown and trigger limit of edge events; a rule over state events
        // has its counters per watch, a rule with `group_by` per group.
        let states: Vec<WatchState> = rule
            .rows(now)
            .into_iter()
            .map(|r| WatchState {
                watch: r.watch.map(|w| w.to_string()),
                group: r.group.map(|g| (*g).clone()),
                state: r.state.to_string(),
                notes: r.notes,
            })
            .collect();
        let events = rule
            .recent
            .iter()
            .map(|s| SeenEvent {
                time: rfc3339(s.event.time),
                watch: s.event.watch.to_string(),
                verdict: s.verdict.to_string(),
                fields: event_json_shown(&s.event.to_json()),
                values: match &c.when {
                    Some(w) => self
                        .evaluator
                        .explain(&w.program, &cel_fields(&s.event.to_json())),
                    None => Vec::new(),
                },
            })
            .collect();
        Some(Explanation {
            rule: name.to_string(),
            watches: c.watches.clone(),
            condition: c.when.as_ref().map(|w| w.source.clone()),
            threshold: match &c.expectation {
                Some(e) => expectation_text(e, self.setting.wall.at(now)),
                None => threshold_text(&c.threshold),
            },
            settings: settings(rule),
            unless: rule
                .unless
                .iter()
                .map(|&j| Blocker {
                    rule: self.rules[j].head.name.to_string(),
                    firing: self.rules[j].is_firing(),
                })
                .collect(),
            silenced_until: None,
            states,
            events,
            actions: Vec::new(),
        })
    }
}

fn threshold_text(t: &Threshold) -> String {
    let d = crate::event::human_duration;
    match *t {
        Threshold::Consecutive(1) => "fires on the first matching event or sample".to_string(),
        Threshold::Consecutive(n) => {
            format!("fires after {n} consecutive matching samples (times = {n})")
        }
        Threshold::Window { times, within } => format!(
            "fires after {times} matching events or samples within {} (times, within)",
            d(within)
        ),
        Threshold::HeldFor(h) => format!("fires when samples have matched for {} (for)", d(h)),
    }
}

/// What a rule that expects a match expects, with the next scheduled time.
fn expectation_text(e: &Expectation, wall: SystemTime) -> String {
    let d = crate::event::human_duration;
    let what = match &e.expect {
        Expect::Within(w) => format!(
            "fires when no match came for {} (expect_within); resolves at the next",
            d(*w)
        ),
        Expect::Schedule(s) => {
            let next = match s.next_after(wall) {
                Some(t) => format!("next at {}", s.show(t)),
                None => "no scheduled time comes again".to_string(),
            };
            format!(
                "expects a match after each time of {:?} in {} before {} pass (expect, grace), \
                 else fires; resolves at the next match; {next}",
                s.text,
                s.zone_name,
                d(s.grace)
            )
        }
    };
    match e.groups.is_empty() {
        true => what,
        false => format!("{what}; groups that must appear: {}", e.groups.len()),
    }
}

fn settings(rule: &Rule) -> Vec<String> {
    let d = crate::event::human_duration;
    let c = &rule.head.config;
    let mut out = Vec::new();
    if let Some(x) = c.debounce {
        out.push(format!("debounce {}", d(x)));
    }
    if let Some(x) = c.cooldown {
        out.push(format!("cooldown {}", d(x)));
    }
    if let Some(x) = c.repeat {
        out.push(format!("repeat {}", d(x)));
    }
    if let Some(l) = c.trigger_limit {
        out.push(format!("trigger limit {} per {}", l.burst, d(l.interval)));
    }
    if let Some(x) = c.resolve_after {
        out.push(format!("resolve_after {}", d(x)));
    }
    if !c.group_by.is_empty() {
        out.push(format!(
            "group_by {}: {} groups held (at most {}); {} dropped for room and {} refused since the start",
            c.group_by.join(", "),
            rule.groups().held,
            c.max_groups,
            rule.groups().dropped,
            rule.groups().refused
        ));
    }
    out
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "rule {} (watches {})",
            self.rule,
            self.watches.join(", ")
        )?;
        match &self.condition {
            Some(c) => writeln!(f, "  when: {c}")?,
            None => writeln!(f, "  when: (none: every event matches)")?,
        }
        writeln!(f, "  {}", self.threshold)?;
        for s in &self.settings {
            writeln!(f, "  {s}")?;
        }
        for b in &self.unless {
            let state = if b.firing {
                "FIRING: this rule's firings are suppressed"
            } else {
                "not firing"
            };
            writeln!(f, "  unless {}: {state}", b.rule)?;
        }
        match self.silenced_until.as_deref() {
            Some("") => writeln!(f, "  SILENCED until `hark unsilence`")?,
            Some(t) => writeln!(f, "  SILENCED until {t}")?,
            None => {}
        }
        writeln!(f, "\nstate:")?;
        for s in &self.states {
            let watch = s.watch.as_deref().unwrap_or("(all watches)");
            match &s.group {
                Some(g) => writeln!(f, "  {watch} [{}]: {}", group_text(g), s.state)?,
                None => writeln!(f, "  {watch}: {}", s.state)?,
            }
            for n in &s.notes {
                writeln!(f, "    {n}")?;
            }
        }
        writeln!(f, "\nlast events ({}):", self.events.len())?;
        if self.events.is_empty() {
            writeln!(f, "  none since hark started")?;
        }
        for e in &self.events {
            writeln!(f, "  {} {}: {}", e.time, e.watch, e.verdict)?;
            for v in &e.values {
                writeln!(f, "    {} = {}", v.expr, v.value)?;
            }
        }
        writeln!(f, "\nlast actions ({}):", self.actions.len())?;
        if self.actions.is_empty() {
            writeln!(f, "  none since hark started")?;
        }
        for a in &self.actions {
            writeln!(
                f,
                "  {} {}: {}",
                a.time,
                a.action.as_deref().unwrap_or(""),
                a.text
            )?;
        }
        Ok(())
    }
}
