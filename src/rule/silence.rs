//! Rules muted by `hark silence` (maintenance): the rule keeps evaluating and changing
//! state, but its firings run no action until the silence ends. A resolve is still sent,
//! so nothing is left firing downstream.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Silences {
    by_rule: BTreeMap<String, Stored>,
}

/// One silence, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// `None`: until `hark unsilence`.
    until: Option<SystemTime>,
    /// Who set it (a control socket's peer, a token's name and address).
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// Who set a silence, and why.
#[derive(Debug, Clone, Default)]
pub struct Note {
    pub by: Option<String>,
    pub comment: Option<String>,
}

impl Silences {
    /// Takes up stored silences; returns those already over, for removal.
    pub fn load(stored: Vec<(String, Vec<u8>)>, now: SystemTime) -> (Silences, Vec<String>) {
        let mut s = Silences::default();
        let mut over = Vec::new();
        for (rule, bytes) in stored {
            match serde_json::from_slice::<Stored>(&bytes) {
                Ok(st) if st.until.is_none_or(|t| t > now) => {
                    s.by_rule.insert(rule, st);
                }
                _ => over.push(rule),
            }
        }
        (s, over)
    }

    /// Silences `rule` for `duration` (or until unsilenced); the bytes to store.
    pub fn set(
        &mut self,
        rule: &str,
        duration: Option<Duration>,
        now: SystemTime,
        note: Note,
    ) -> Vec<u8> {
        let stored = Stored {
            until: duration.map(|d| now + d),
            by: note.by,
            comment: note.comment,
        };
        let bytes = serde_json::to_vec(&stored).unwrap_or_default();
        self.by_rule.insert(rule.to_string(), stored);
        bytes
    }

    /// Who silenced `rule`, and why.
    pub fn note(&self, rule: &str) -> Option<Note> {
        self.by_rule.get(rule).map(|s| Note {
            by: s.by.clone(),
            comment: s.comment.clone(),
        })
    }

    /// Every silence as stored, to write into a store made anew.
    pub fn all(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.by_rule
            .iter()
            .map(|(rule, stored)| {
                let bytes = serde_json::to_vec(stored).unwrap_or_default();
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
        self.by_rule.remove(rule).is_some()
    }

    /// `Some(until)` while `rule` is silenced (`until` is `None` for no end).
    pub fn active(&self, rule: &str, now: SystemTime) -> Option<Option<SystemTime>> {
        match self.by_rule.get(rule)?.until {
            Some(t) if t <= now => None,
            until => Some(until),
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
        let timed = s.set("a", Some(Duration::from_secs(60)), now, Note::default());
        let forever = s.set("b", None, now, Note::default());
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
