//! What of the engine outlives it: states saved and taken up again across a restart,
//! and carried over a reload.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::mechanism::{Mechanism, Restored};
use super::{Engine, RETIRED_GRACE};
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
            let Some(r) = self.rules.iter_mut().find(|r| &*r.head.name == rule) else {
                stale.push(key);
                continue;
            };
            let head = &r.head;
            let mechanism = if rest.starts_with(super::GROUP_MARK) {
                &mut r.edges
            } else {
                &mut r.states
            };
            match mechanism.restore(head, rest, &bytes, now, wall) {
                Restored::Taken => {}
                Restored::Stale => stale.push(key),
                Restored::Undecodable(e) => {
                    tracing::warn!(key = %key, error = %e, "ignoring a saved rule state that does not decode");
                }
            }
        }
        stale
    }

    /// The states changed since the last call, as bytes to store (`None` removes a stored
    /// one), keyed `rule/watch`, `rule/watch␞group` or `rule/␞group`.
    pub fn take_changes(
        &mut self,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<(String, Option<Vec<u8>>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|(i, key)| {
                let rule = &mut self.rules[i];
                let saved = rule.mechanism_of_key(&key).save(&key, now, wall);
                (crate::store::key(&rule.head.name, &key), saved)
            })
            .collect()
    }

    /// Every state worth saving, to write into a store made anew.
    pub fn all_states(&self, now: Instant, wall: SystemTime) -> Vec<(String, Vec<u8>)> {
        self.rules
            .iter()
            .flat_map(|r| {
                let mut all = r.states.save_all(now, wall);
                all.extend(r.edges.save_all(now, wall));
                all.into_iter()
                    .map(|(k, b)| (crate::store::key(&r.head.name, &k), b))
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
        let mut next = Engine::with_clock(config, self.setting.wall);
        next.retired = std::mem::take(&mut self.retired);
        next.retired
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < RETIRED_GRACE);
        for old in &mut self.rules {
            if !config.rules.contains_key(&*old.head.name) && !old.states.is_empty() {
                let fresh = Mechanism::for_states(&old.head.config);
                let states = std::mem::replace(&mut old.states, fresh);
                next.retired
                    .insert(Arc::clone(&old.head.name), (states, now));
            }
        }
        for r in &mut next.rules {
            let Some(old) = self.rules.iter_mut().find(|o| o.head.name == r.head.name) else {
                // Back within the grace: what it had, as across a restart.
                if let Some((states, _)) = next.retired.remove(&r.head.name) {
                    r.states.carry(&r.head, &states, now, wall);
                    tracing::info!(rule = %r.head.name, "rule back in the configuration: it keeps its state");
                }
                continue;
            };
            if unchanged.contains(&*r.head.name) {
                std::mem::swap(&mut r.edges, &mut old.edges);
                std::mem::swap(&mut r.states, &mut old.states);
                r.logged_errors = std::mem::take(&mut old.logged_errors);
                r.recent = std::mem::take(&mut old.recent);
                continue;
            }
            r.edges.carry(&r.head, &old.edges, now, wall);
            r.states.carry(&r.head, &old.states, now, wall);
        }
        *self = next;
    }

    /// The store keys (`rule/watch`, `rule/watch␞group`, `rule/␞group`) of every state and
    /// group firing now.
    pub fn firing_keys(&self) -> HashSet<String> {
        self.rules
            .iter()
            .flat_map(|r| {
                let mut keys = r.states.firing_keys();
                keys.extend(r.edges.firing_keys());
                keys.into_iter()
                    .map(|k| crate::store::key(&r.head.name, &k))
            })
            .collect()
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
