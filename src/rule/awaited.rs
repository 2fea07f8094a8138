//! One group's awaited match of a rule that expects one (expected.rs keeps them all):
//! its window in words and the event it fires with when the match is missed.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::head::Head;
use crate::event::{human_duration, rfc3339, Event};

/// One group's awaited match.
pub(super) struct Awaited {
    pub watch: Arc<str>,
    /// The wall-clock mark its window runs from: its last match, or when the rule was
    /// first loaded.
    pub from: SystemTime,
    /// Whether `from` is a match.
    pub matched: bool,
    /// When the match is due by (none: firing, or a schedule that never comes again).
    pub due: Option<(Instant, SystemTime)>,
    /// Since when it fires, in both clocks.
    pub firing: Option<(Instant, SystemTime)>,
    /// How many times it fired.
    pub fired: u64,
}

/// The stored form of a group.
#[derive(Serialize, Deserialize)]
pub(super) struct SavedAwaited {
    pub from: SystemTime,
    pub matched: bool,
    pub firing_since: Option<SystemTime>,
    pub fired: u64,
}

impl Awaited {
    /// Its window in words: since what, and by when.
    pub fn describe(&self, show: &dyn Fn(SystemTime) -> String, now: SystemTime) -> Vec<String> {
        let mut notes = Vec::new();
        let last = match self.matched {
            true => format!("last match at {}", show(self.from)),
            false => format!("no match yet; waiting since {}", show(self.from)),
        };
        notes.push(last);
        match (self.due, self.firing) {
            (_, Some((_, since))) => notes.push(format!(
                "missed: firing since {}, until the next match",
                show(since)
            )),
            (Some((_, t)), None) => {
                let left = t.duration_since(now).unwrap_or_default();
                notes.push(format!(
                    "a match is due by {} (in {})",
                    show(t),
                    human_duration(left)
                ));
            }
            (None, None) => notes.push("no scheduled time comes again".to_string()),
        }
        notes
    }
}

/// The event a missed match fires with: the group's fields, when it was due and when it
/// last matched.
pub(super) fn missed_event(
    head: &Head,
    host: &Arc<str>,
    key: &str,
    g: &Awaited,
    due: SystemTime,
) -> Arc<Event> {
    let base = head.group_event(key);
    let mut fields = base.fields.clone();
    fields.insert("kind".into(), "missed".into());
    fields.insert("expected_by".into(), rfc3339(due).into());
    let last = g.matched.then(|| rfc3339(g.from));
    fields.insert(
        "last_match".into(),
        last.map_or(serde_json::Value::Null, Into::into),
    );
    Arc::new(Event {
        watch: Arc::clone(&g.watch),
        source: "expected",
        time: SystemTime::now(),
        host: Arc::clone(host),
        edge: true,
        fields,
        cursor: None,
    })
}
