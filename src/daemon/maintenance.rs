//! Maintenance windows at work: inside one, a covered rule's firings run no action (as
//! under `hark silence`; resolves still run); a firing that will resolve and has not when
//! the window ends is fired then, so what is still wrong after the work is said.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Daemon;
use crate::config::Config;
use crate::control::WindowStatus;
use crate::event::{Firing, FiringState};

/// The firings held by windows, by rule and scope, until their window ends.
#[derive(Default)]
pub(super) struct Held(BTreeMap<(Arc<str>, String), Firing>);

/// The window covering `rule` at `now` that ends last: its name and end.
pub(super) fn covering(
    config: &Config,
    rule: &str,
    now: SystemTime,
) -> Option<(String, SystemTime)> {
    config
        .maintenance
        .values()
        .filter(|m| m.covers(rule))
        .filter_map(|m| Some((m.name.clone(), m.current(now)?.1)))
        .max_by_key(|(_, end)| *end)
}

/// Every window, current and next.
pub(super) fn windows(config: &Config, now: SystemTime) -> Vec<WindowStatus> {
    let rfc = crate::event::rfc3339;
    config
        .maintenance
        .values()
        .map(|m| {
            let next = m.next(now);
            WindowStatus {
                name: m.name.clone(),
                rules: m.rules.clone(),
                active_until: m.current(now).map(|(_, end)| rfc(end)),
                next_start: next.map(|(s, _)| rfc(s)),
                next_end: next.map(|(_, e)| rfc(e)),
                next_local: next.map(|(s, e)| format!("{} to {}", m.show(s), m.show(e))),
            }
        })
        .collect()
}

impl Daemon {
    /// A firing of a rule in a window runs no action; one that will resolve is held
    /// until the window ends. A resolve drops what was held for its scope and runs.
    pub(super) fn quiet_in_window(&mut self, firing: &mut Firing, now: SystemTime) {
        let key = (Arc::clone(&firing.rule), firing.scope());
        if firing.state == FiringState::Resolved {
            self.held.0.remove(&key);
            return;
        }
        let Some((window, until)) = covering(&self.config, &firing.rule, now) else {
            return;
        };
        let until = crate::event::rfc3339(until);
        tracing::info!(rule = %firing.rule, maintenance = %window, until = %until, "in a maintenance window: its actions do not run");
        let text = format!("maintenance `{window}` until {until}: its actions do not run");
        crate::trace::publish(
            crate::trace::Line::new(crate::trace::Kind::Verdict, "silenced", text)
                .watch(&firing.event.watch)
                .rule(&firing.rule),
        );
        if firing.resolves {
            self.held.0.insert(key, firing.clone());
        }
        firing.actions.clear();
    }

    /// The next moment a window opens or closes, for the main loop's timer; only while
    /// some firing is held (a window's start changes nothing by itself).
    pub(super) fn next_window_end(&self) -> Option<Instant> {
        if self.held.0.is_empty() {
            return None;
        }
        let now = SystemTime::now();
        let end = self
            .held
            .0
            .keys()
            // A held firing no window covers any more (its window ended, or a reload
            // took the window away): due now, whatever other windows hold.
            .map(|(rule, _)| covering(&self.config, rule, now).map_or(now, |(_, e)| e))
            .min()
            .unwrap_or(now);
        let wait = end.duration_since(now).unwrap_or_default();
        Some(Instant::now() + wait)
    }

    /// The held firings whose rules no window covers any more, fired now.
    pub(super) fn windows_closed(&mut self) -> Vec<Firing> {
        let now = SystemTime::now();
        let config = &self.config;
        let done: Vec<_> = self
            .held
            .0
            .keys()
            .filter(|(rule, _)| covering(config, rule, now).is_none())
            .cloned()
            .collect();
        let mut out = Vec::new();
        for key in done {
            if let Some(mut f) = self.held.0.remove(&key) {
                if !self.config.rules.contains_key(&*f.rule) {
                    continue;
                }
                tracing::info!(rule = %f.rule, "maintenance over and the rule still firing: its actions run now");
                f.time = now;
                out.push(f);
            }
        }
        out
    }
}
