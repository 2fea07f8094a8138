//! What of the engine outlives it: states saved and taken up again across a restart,
//! and carried over a reload.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{episode, new_machine, EdgeGate, Engine, Rule, Saved, GROUP_MARK, RETIRED_GRACE};
use crate::config::Config;

impl Engine {
    /// Takes up states saved by an earlier run. Returns the keys of saved states that no
    /// longer belong to a rule and watch of this configuration, for removal.
    /// Saved states come as stored: `rule/watch` (or `rule/watch␞group`) for a state
    /// machine, `rule/␞group` for a firing group of an event rule.
    pub fn restore(
        &mut self,
        saved: Vec<(String, Vec<u8>)>,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<String> {
        let mut stale = Vec::new();
        for (key, bytes) in saved {
            let Some((rule, rest)) = key.split_once('/') else {
                stale.push(key);
                continue;
            };
            let Some(r) = self.rules.iter_mut().find(|r| &*r.name == rule) else {
                stale.push(key);
                continue;
            };
            if let Some(group) = rest.strip_prefix(GROUP_MARK) {
                match serde_json::from_slice::<episode::SavedEpisode>(&bytes) {
                    Ok(s) if r.counts_edges() && r.config.resolve_after.is_some() => {
                        let event = r.group_event(group);
                        r.episodes.restore(
                            &r.config,
                            Arc::from(group),
                            &s.episode,
                            event,
                            now,
                            wall,
                        );
                        tracing::info!(rule = %r.name, group, "still firing from before the restart");
                    }
                    _ => stale.push(key),
                }
                continue;
            }
            let fits = r.fits(rest);
            match serde_json::from_slice::<Saved>(&bytes) {
                Ok(s) if fits => {
                    let mut m = new_machine(&r.config);
                    m.restore(&s, now, wall);
                    if m.is_firing() {
                        tracing::info!(rule = %r.name, watch = rest, "still firing from before the restart");
                    }
                    r.take_state(Arc::from(rest), m);
                }
                Ok(_) => stale.push(key),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "ignoring a saved rule state that does not decode");
                }
            }
        }
        stale
    }

    /// The states changed since the last call, to persist: `None` removes a saved one.
    pub fn take_changes(&mut self, now: Instant, wall: SystemTime) -> Vec<(String, Option<Saved>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|(i, watch)| {
                let rule = &self.rules[i];
                // A state dropped (a group, for room) is removed from the store too.
                let saved = rule
                    .states
                    .get(&watch)
                    .filter(|m| m.worth_saving())
                    .map(|m| m.save(now, wall));
                (crate::store::key(&rule.name, &watch), saved)
            })
            .collect()
    }

    /// The firing groups of event rules changed since the last call, as bytes to store
    /// (`None` removes), keyed `rule/␞group`.
    pub fn take_group_changes(
        &mut self,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<(String, Option<Vec<u8>>)> {
        std::mem::take(&mut self.dirty_groups)
            .into_iter()
            .map(|(i, group)| {
                let rule = &self.rules[i];
                let saved = rule
                    .episodes
                    .save(&group, now, wall)
                    .and_then(|s| serde_json::to_vec(&s).ok());
                (
                    crate::store::key(&rule.name, &format!("{GROUP_MARK}{group}")),
                    saved,
                )
            })
            .collect()
    }

    /// Every state worth saving, to write into a store made anew.
    pub fn all_states(&self, now: Instant, wall: SystemTime) -> Vec<(String, Saved)> {
        self.rules
            .iter()
            .flat_map(|r| {
                r.states
                    .iter()
                    .filter(|(_, m)| m.worth_saving())
                    .map(move |(w, m)| (crate::store::key(&r.name, w), m.save(now, wall)))
            })
            .collect()
    }

    /// The firing groups of event rules, as bytes to write into a store made anew.
    pub fn all_group_states(&self, now: Instant, wall: SystemTime) -> Vec<(String, Vec<u8>)> {
        self.rules
            .iter()
            .flat_map(|r| {
                r.episodes.firing_keys().into_iter().filter_map(move |g| {
                    let saved = r.episodes.save(&g, now, wall)?;
                    let bytes = serde_json::to_vec(&saved).ok()?;
                    Some((
                        crate::store::key(&r.name, &format!("{GROUP_MARK}{g}")),
                        bytes,
                    ))
                })
            })
            .collect()
    }

    /// The engine for a reloaded configuration: rules whose definition did not change
    /// (named in `unchanged`) keep everything they had, pending progress, debounce and
    /// cooldown included. Others start afresh, but keep their saved state (firing, last
    /// fired) for the watches they still hear, as across a restart.
    pub fn reload(
        &mut self,
        config: &Config,
        unchanged: &HashSet<String>,
        now: Instant,
        wall: SystemTime,
    ) {
        let mut next = Engine::new(config);
        next.retired = std::mem::take(&mut self.retired);
        next.retired
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < RETIRED_GRACE);
        for old in &mut self.rules {
            if !config.rules.contains_key(&*old.name) && !old.states.is_empty() {
                next.retired.insert(
                    Arc::clone(&old.name),
                    (std::mem::take(&mut old.states), now),
                );
            }
        }
        for r in &mut next.rules {
            let Some(old) = self.rules.iter_mut().find(|o| o.name == r.name) else {
                // Back within the grace: what it had, as across a restart.
                if let Some((states, _)) = next.retired.remove(&r.name) {
                    for (w, m) in &states {
                        if m.worth_saving() && r.fits(w) {
                            let mut fresh = new_machine(&r.config);
                            fresh.restore(&m.save(now, wall), now, wall);
                            r.take_state(Arc::clone(w), fresh);
                        }
                    }
                    tracing::info!(rule = %r.name, "rule back in the configuration: it keeps its state");
                }
                continue;
            };
            if unchanged.contains(&*r.name) {
                r.gate = std::mem::replace(&mut old.gate, EdgeGate::new(None, None, None));
                r.states = std::mem::take(&mut old.states);
                r.state_groups = std::mem::take(&mut old.state_groups);
                r.logged_errors = std::mem::take(&mut old.logged_errors);
                r.recent = std::mem::take(&mut old.recent);
                r.episodes = std::mem::take(&mut old.episodes);
                continue;
            }
            // Firing groups go on firing (and resolve on time) if the rule still resolves
            // groups by `resolve_after`.
            if r.config.resolve_after.is_some() {
                for key in old.episodes.firing_keys() {
                    if let Some(s) = old.episodes.save(&key, now, wall) {
                        let event = old
                            .episodes
                            .event(&key)
                            .unwrap_or_else(|| r.group_event(&key));
                        r.episodes
                            .restore(&r.config, key, &s.episode, event, now, wall);
                    }
                }
            }
            for (w, m) in &old.states {
                if m.worth_saving() && r.fits(w) {
                    let mut fresh = new_machine(&r.config);
                    fresh.restore(&m.save(now, wall), now, wall);
                    r.take_state(Arc::clone(w), fresh);
                }
            }
        }
        *self = next;
    }

    /// The store keys (`rule/watch`, `rule/watch␞group`, `rule/␞group`) of every state and
    /// group firing now.
    pub fn firing_keys(&self) -> std::collections::HashSet<String> {
        self.rules
            .iter()
            .flat_map(|r| {
                r.states
                    .iter()
                    .filter(|(_, m)| m.firing_since().is_some())
                    .map(|(w, _)| crate::store::key(&r.name, w))
                    .chain(
                        r.episodes
                            .firing_keys()
                            .into_iter()
                            .map(|g| crate::store::key(&r.name, &format!("{GROUP_MARK}{g}"))),
                    )
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Rule {
    /// Takes up a state kept from before (a restart, a reload).
    fn take_state(&mut self, key: Arc<str>, m: super::StateMachine) {
        if key.contains(GROUP_MARK) {
            self.state_groups.saw(&key, m.is_firing());
        }
        self.states.insert(key, m);
    }

    /// Whether a saved state keyed `watch` (or `watch␞group`) belongs to this rule: a
    /// watch it hears, grouped exactly when the rule has `group_by`.
    fn fits(&self, key: &str) -> bool {
        let watch = key.split(GROUP_MARK).next().unwrap_or(key);
        self.config.watches.iter().any(|w| w == watch)
            && key.contains(GROUP_MARK) != self.config.group_by.is_empty()
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;
    use crate::event::Event;
    use crate::rule::test_support::{event, load};

    const BEFORE: &str = r#"
[watch.port]
type = "tcp"
address = "127.0.0.1:1"

[rule.kept]
watch = "port"
when = "!connected"
times = 3

[rule.changed]
watch = "port"
when = "!connected"
times = 3
"#;

    fn down() -> Arc<Event> {
        event("port", "tcp", false, &[("connected", false.into())])
    }

    #[test]
    fn an_unchanged_rule_keeps_its_pending_progress_across_a_reload_and_a_changed_one_does_not() {
        let (_d1, before) = load(BEFORE);
        let (_d2, after) = load(&BEFORE.replace(
            "[rule.changed]\nwatch = \"port\"\n",
            "[rule.changed]\nwatch = \"port\"\nsummary = \"new\"\n",
        ));
        let mut engine = Engine::new(&before);
        let now = Instant::now();
        assert!(engine.on_event(down(), now).is_empty());
        assert!(engine.on_event(down(), now).is_empty());
        let unchanged: HashSet<String> = after
            .rules
            .iter()
            .filter(|(n, r)| before.rules[*n].definition == r.definition)
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(unchanged, HashSet::from(["kept".to_string()]));
        engine.reload(&after, &unchanged, now, SystemTime::now());
        let fired: Vec<String> = engine
            .on_event(down(), now)
            .iter()
            .map(|f| f.rule.to_string())
            .collect();
        assert_eq!(fired, ["kept"], "only the unchanged rule was at 2 of 3");
    }
}
