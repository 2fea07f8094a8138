//! The types that cross between watches, rules and actions: the `Event` every watch emits
//! and the `Firing` every rule hands to actions. They stand alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use serde_json::{Map, Value};

mod position;
mod text;

pub use position::{FilePosition, Mark};
pub use text::{
    decode_os, display_lossy, encode_os, event_json_lossy, event_json_shown, human_duration,
    rfc3339, SHOWN_DEPTH,
};

/// Something a watch observed.
#[derive(Debug, Clone)]
pub struct Event {
    pub watch: Arc<str>,
    /// The watch's type: `file`, `process`, ...
    pub source: &'static str,
    pub time: SystemTime,
    pub host: Arc<str>,
    /// Edge events (a file changed, a process exited) fire on each match; state events
    /// (a check's latest result) drive a rule's state machine.
    pub edge: bool,
    /// The type-specific fields (`kind`, `path`, ...).
    pub fields: Map<String, Value>,
    /// Where a watch that reads a stream (a log file) is after this event: stored with the
    /// rule states and deliveries the event led to, in one transaction, so a restart
    /// neither loses nor repeats what the stream said.
    pub cursor: Option<Box<Cursor>>,
}

/// A stream's position after an event, to store under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `watch/what`: a file, a journal.
    pub key: Arc<str>,
    pub value: Mark,
    /// Nothing to judge: the event only moves the position (lines no rule would see).
    pub only: bool,
}

impl Event {
    /// An event of watch `watch` (of type `source`) on `host`, now: how every watch makes
    /// its events.
    pub fn new(
        watch: &Arc<str>,
        source: &'static str,
        host: &Arc<str>,
        edge: bool,
        fields: Map<String, Value>,
    ) -> Event {
        Event {
            watch: Arc::clone(watch),
            source,
            time: SystemTime::now(),
            host: Arc::clone(host),
            edge,
            fields,
            cursor: None,
        }
    }

    /// The event, with where its stream (`key`) is after it.
    pub fn at(mut self, key: Arc<str>, value: Mark) -> Event {
        self.cursor = Some(Box::new(Cursor {
            key,
            value,
            only: false,
        }));
        self
    }

    /// An event of a stream's watch that only moves its stored position: what was read
    /// led to nothing to judge.
    pub fn only_cursor(
        watch: &Arc<str>,
        source: &'static str,
        host: &Arc<str>,
        key: Arc<str>,
        value: Mark,
    ) -> Event {
        let mut e = Event::new(watch, source, host, true, Map::new()).at(key, value);
        if let Some(c) = &mut e.cursor {
            c.only = true;
        }
        e
    }

    /// Every field a condition or template sees, the common ones included.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut all = self.fields.clone();
        all.insert("watch".into(), Value::from(&*self.watch));
        all.insert("type".into(), Value::from(self.source));
        all.insert("time".into(), Value::from(rfc3339(self.time)));
        all.insert("host".into(), Value::from(&*self.host));
        all
    }

    pub fn kind(&self) -> Option<&str> {
        self.fields.get("kind").and_then(Value::as_str)
    }
}

/// Whether a firing starts or ends an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringState {
    Firing,
    Resolved,
}

impl FiringState {
    pub fn as_str(self) -> &'static str {
        match self {
            FiringState::Firing => "firing",
            FiringState::Resolved => "resolved",
        }
    }
}

/// What a rule hands to its actions: enough to render and deliver them without knowing
/// anything of the rule engine.
#[derive(Debug, Clone)]
pub struct Firing {
    pub rule: Arc<str>,
    pub state: FiringState,
    pub event: Arc<Event>,
    /// The names of the actions to run.
    pub actions: Vec<Arc<str>>,
    pub severity: Arc<str>,
    pub labels: Arc<BTreeMap<String, String>>,
    /// The rule's `summary` template, rendered by the action side.
    pub summary: Option<Arc<str>>,
    /// How many matching events this firing stands for (a debounced burst counts each).
    pub count: u64,
    /// Of a burst (a debounce window, matches held by the cooldown): its last event
    /// (`event` is its first) and the kinds its events had, in the order first seen.
    pub last: Option<Arc<Event>>,
    pub kinds: Vec<Arc<str>>,
    pub time: SystemTime,
    /// How long the rule has been firing.
    pub duration: Duration,
    /// The group (`group_by`'s fields and their values) this firing is about.
    pub group: Option<Group>,
    /// A resolve will follow (a state rule, or an event rule with `resolve_after`); an
    /// event rule's firing without one ends by itself.
    pub resolves: bool,
}

/// One group of a rule with `group_by`.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's values in `group_by`'s order, as a JSON array: its key in the store.
    pub key: Arc<str>,
    /// The values by field: what templates see as `group`, and alert labels.
    pub fields: Arc<BTreeMap<String, String>>,
}

/// Between a watch's name and a group in the key of a per-group state (`watch␞group`),
/// and before the group of an event rule's firing group (`␞group`).
pub const GROUP_MARK: char = '\u{1e}';

/// A group as people read it: `ip=203.0.113.7 user=root`.
pub fn group_text(g: &BTreeMap<String, String>) -> String {
    g.iter()
        .map(|(k, v)| format!("{k}={}", display_lossy(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Firing {
    /// What of its rule this firing is about, as its state is keyed in the store: the
    /// watch; with `group_by`, the watch and the group (a state rule) or the group (an
    /// event rule). Alerts are keyed by it.
    pub fn scope(&self) -> String {
        match &self.group {
            None => self.event.watch.to_string(),
            Some(g) if self.event.edge => format!("{GROUP_MARK}{}", g.key),
            Some(g) => format!("{}{GROUP_MARK}{}", self.event.watch, g.key),
        }
    }
}
