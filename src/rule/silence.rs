//! Rules muted by `hark silence` (maintenance): the rule keeps evaluating and changing
//! state, but its firings run no action until the silence ends. A resolve is still sent,
//! so nothing is left firing downstream.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Silences {
    /// `None`: until `hark unsilence`.
    until: BTreeMap<String, Option<SystemTime>>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    until: Option<SystemTime>,
}

impl Silences {
    /// Takes up stored silences; returns those already over, for removal.
    pub fn load(stored: Vec<(String, Vec<u8>)>, now: SystemTime) -> (Silences, Vec<String>) {
        let mut s = Silences::default();
        let mut over = Vec::new();
        for (rule, bytes) in stored {
            match serde_json::from_slice::<Stored>(&bytes) {
                Ok(st) if st.until.is_none_or(|t| t > now) => {
                    s.until.insert(rule, st.until);
                }
                _ => over.push(rule),
            }
        }
        (s, over)
    }

    /// Silences `rule` for `duration` (or until unsilenced); the bytes to store.
    pub fn set(&mut self, rule: &str, duration: Option<Duration>, now: SystemTime) -> Vec<u8> {
        let until = duration.map(|d| now + d);
        self.until.insert(rule.to_string(), until);
        serde_json::to_vec(&Stored { until }).unwrap_or_default()
    }

    /// Every silence as stored, to write into a store made anew.
    pub fn all(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.until
            .iter()
            .map(|(rule, until)| {
                let bytes = serde_json::to_vec(&Stored { until: *until }).unwrap_or_default();
                (rule.clone(), Some(bytes))
            })
            .collect()
    }

    /// A firing of a silenced rule runs no action (said in the log and the live trace);
    /// a resolve always does, so nothing is left firing downstream.
    pub fn apply(&self, firing: &mut crate::event::Firing, now: SystemTime) {
        if firing.state != crate::event::FiringState::Firing {
            return;
        }
        let Some(until) = self.active(&firing.rule, now) else {
            return;
        };
        let until = until.map_or("unsilenced".into(), crate::event::rfc3339);
        tracing::info!(rule = %firing.rule, until = %until, "silenced: its actions do not run");
        let text = format!("silenced until {until}: its actions do not run");
        crate::trace::publish(
            crate::trace::Line::new(crate::trace::Kind::Verdict, "silenced", text)
                .watch(&firing.event.watch)
                .rule(&firing.rule),
        );
        firing.actions.clear();
    }

    /// Whether `rule` was silenced.
    pub fn remove(&mut self, rule: &str) -> bool {
        self.until.remove(rule).is_some()
    }

    /// `Some(until)` while `rule` is silenced (`until` is `None` for no end).
    pub fn active(&self, rule: &str, now: SystemTime) -> Option<Option<SystemTime>> {
        match self.until.get(rule)? {
            Some(t) if *t <= now => None,
            until => Some(*until),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_ends_at_its_time_and_survives_a_reload_from_the_store() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut s = Silences::default();
        let timed = s.set("a", Some(Duration::from_secs(60)), now);
        let forever = s.set("b", None, now);
        assert_eq!(
            s.active("a", now),
            Some(Some(now + Duration::from_secs(60)))
        );
        assert_eq!(s.active("a", now + Duration::from_secs(60)), None);
        assert_eq!(
            s.active("b", now + Duration::from_secs(1 << 30)),
            Some(None)
        );
        assert_eq!(s.active("c", now), None);

        let later = now + Duration::from_secs(120);
        let (loaded, over) = Silences::load(
            vec![
                ("a".into(), timed),
                ("b".into(), forever),
                ("x".into(), b"junk".to_vec()),
            ],
            later,
        );
        assert_eq!(over, vec!["a".to_string(), "x".to_string()]);
        assert_eq!(loaded.active("b", later), Some(None));
        let mut loaded = loaded;
        assert!(loaded.remove("b"));
        assert!(!loaded.remove("b"));
    }
}
