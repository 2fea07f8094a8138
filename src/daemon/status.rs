//! `hark status`: what the daemon is doing, from its parts.

use std::time::{Instant, SystemTime};

use serde_json::Value;

use super::{blocking, Daemon};
use crate::action::outbox::Delivery;
use crate::control::{
    ActionStatus, FailedDelivery, OutboxStatus, Response, RuleStatus, Status, WatchStatus,
};
use crate::event::rfc3339;

impl Daemon {
    pub(super) async fn status(&self) -> Status {
        let now = Instant::now();
        let wall = SystemTime::now();
        let watches = self
            .config
            .watches
            .values()
            .map(|w| {
                let seen = self.tally.seen.get(w.name.as_str());
                let last = seen.map(|(_, e)| e);
                WatchStatus {
                    name: w.name.clone(),
                    kind: w.kind.type_name().to_string(),
                    events: seen.map_or(0, |(n, _)| *n),
                    last_event: last.map(|e| rfc3339(e.time)),
                    last_error: last
                        .and_then(|e| e.fields.get("error"))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(crate::event::display_lossy),
                    last: last.map(|e| crate::event::event_json_shown(&e.fields)),
                    problems: self
                        .intake
                        .watches
                        .get(&w.name)
                        .map(|h| h.problems())
                        .unwrap_or_default(),
                }
            })
            .collect();
        let rules = self.rule_rows(now, wall);
        let (running, queued) = self.actions.slots.load();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started: rfc3339(self.started),
            config_files: self
                .config
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            watches,
            rules,
            actions: ActionStatus { running, queued },
            outbox: self.outbox_status().await,
            last_reload: self.last_reload.clone(),
            timing: {
                let mut t = crate::metrics::get().timings.status(
                    &self.config.watches.keys().cloned().collect::<Vec<_>>(),
                    &self.config.actions.keys().cloned().collect::<Vec<_>>(),
                );
                // Now, not at the last runtime sample (up to 5 s old).
                let depth = self.intake.waiting();
                t.runtime.event_queue_max = t.runtime.event_queue_max.max(depth);
                t.runtime.event_queue_depth = depth;
                t
            },
            maintenance: super::maintenance::windows(&self.config, wall),
            changes: self.tally.changes.iter().cloned().collect(),
            listener_problems: self.web.as_ref().map(|w| w.problems()).unwrap_or_default(),
        }
    }

    /// Each rule's rows: its state per watch or group, silence, window and summary.
    fn rule_rows(&self, now: Instant, wall: SystemTime) -> Vec<RuleStatus> {
        let at = |t: Instant| rfc3339(wall - now.saturating_duration_since(t));
        // Each rule's window, worked out once, not once per group.
        let mut windows = std::collections::HashMap::new();
        self.engine
            .status(Instant::now())
            .into_iter()
            .map(|r| RuleStatus {
                silenced_until: self
                    .silences
                    .active(&r.rule, wall)
                    .map(|u| u.map(rfc3339).unwrap_or_default()),
                silenced_by: self.silences.note(&r.rule).and_then(|n| n.by),
                silence_comment: self.silences.note(&r.rule).and_then(|n| n.comment),
                maintenance: windows
                    .entry(std::sync::Arc::clone(&r.rule))
                    .or_insert_with(|| {
                        super::maintenance::covering(&self.config, &r.rule, wall)
                            .map(|(name, until)| format!("{name} until {}", rfc3339(until)))
                    })
                    .clone(),
                name: r.rule.to_string(),
                // An event rule has one state for all its watches: they are named.
                watch: r.watch.map(|w| w.to_string()).or_else(|| {
                    self.config
                        .rules
                        .get(&*r.rule)
                        .map(|c| c.watches.join(", "))
                }),
                group: r.group.map(|g| (*g).clone()),
                groups: r.groups,
                summary: (r.state == "firing")
                    .then(|| self.tally.summaries.get(&r.rule))
                    .flatten()
                    .map(|s| self.actions.dispatcher.summary_text(s)),
                state: r.state.to_string(),
                since: r.since.map(at),
                expected_by: r.due.map(rfc3339),
            })
            .collect()
    }

    /// Why a rule is in its state: the engine's account, its silence and last actions.
    pub(super) fn explain(&self, rule: &str) -> Response {
        let Some(mut e) = self.engine.explain(rule, Instant::now()) else {
            return Response::error(self.no_rule(rule));
        };
        e.silenced_until = self
            .silences
            .active(rule, SystemTime::now())
            .map(|u| u.map(rfc3339).unwrap_or_default());
        e.actions = crate::trace::last_actions(rule);
        Response {
            explain: Some(e),
            ..Response::default()
        }
    }

    /// Checks a `tail` request's filters; the trace itself is streamed by the control
    /// socket. A rule filter gets the rule's watches, whose events it shows.
    pub(super) fn tail(&self, watch: Option<&str>, rule: Option<&str>) -> Response {
        if let Some(w) = watch {
            if !self.config.watches.contains_key(w) {
                return Response::error(format!("no watch `{w}` in the running configuration"));
            }
        }
        let mut watches = None;
        if let Some(r) = rule {
            match self.config.rules.get(r) {
                Some(c) => watches = Some(c.watches.clone()),
                None => {
                    return Response::error(format!("no rule `{r}` in the running configuration"))
                }
            }
        }
        Response {
            message: Some("tailing".into()),
            watches,
            ..Response::default()
        }
    }

    /// Pending and failed deliveries, as stored.
    async fn outbox_status(&self) -> OutboxStatus {
        let rows = match blocking(&self.store, |s| s.outbox()).await {
            Ok(rows) => rows,
            Err(e) => {
                return OutboxStatus {
                    error: Some(format!("{e:#}")),
                    ..OutboxStatus::default()
                }
            }
        };
        let mut status = OutboxStatus::default();
        let mut oldest: Option<SystemTime> = None;
        let retrying = self.actions.outbox.retrying();
        for (id, bytes) in rows {
            let Ok(d) = serde_json::from_slice::<Delivery>(&bytes) else {
                continue;
            };
            if let (None, Some(r)) = (&d.failed, retrying.get(&id)) {
                status
                    .retrying
                    .push(crate::action::outbox::Entry::live(id, &d, Some(r)));
            }
            match d.failed {
                Some(error) => status.failed.push(FailedDelivery {
                    rule: d.rule,
                    action: d.action,
                    state: d.state,
                    accepted: rfc3339(d.accepted),
                    attempts: d.attempts,
                    error,
                }),
                None => {
                    status.pending += 1;
                    oldest = Some(oldest.map_or(d.accepted, |o| o.min(d.accepted)));
                }
            }
        }
        status.oldest_pending = oldest.map(rfc3339);
        status
    }
}
