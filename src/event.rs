//! The types that cross between watches, rules and actions: the `Event` every watch emits
//! and the `Firing` every rule hands to actions. They stand alone.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use serde_json::{Map, Value};

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

/// Where a stream is; made into bytes only for the last of a batch, when stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The stream is gone: its key is removed.
    Forget,
    File(FilePosition),
    /// A journal's cursor.
    Text(Arc<str>),
}

impl Mark {
    /// As stored (`None`: remove the key): a file position as a JSON object, a cursor as
    /// a JSON string.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Mark::Forget => None,
            Mark::File(p) => serde_json::to_vec(p).ok(),
            Mark::Text(t) => serde_json::to_vec(&**t).ok(),
        }
    }

    /// From what was stored; `None` for bytes that are neither.
    pub fn from_bytes(b: &[u8]) -> Option<Mark> {
        if let Ok(p) = serde_json::from_slice::<FilePosition>(b) {
            return Some(Mark::File(p));
        }
        serde_json::from_slice::<String>(b)
            .ok()
            .map(|t| Mark::Text(Arc::from(t)))
    }
}

/// Where a file is read to, as a log watch stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Hash and length of the file's first bytes (at most `HEAD`).
    pub head: (u64, u32),
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

/// `2026-11-26T12:00:00.123Z`
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
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

// Paths and names from the outside world are bytes, not always UTF-8. Each byte that is
// not part of valid UTF-8 is carried in a string as one character of Unicode's private use
// plane 16 (U+10FF80 to U+10FFFF), so CEL and templates can work on the text and an argv
// element or environment variable gets the original bytes back. Those characters are valid
// in a real name too: one that holds them has each of their UTF-8 bytes escaped the same
// way, so decoding gives back exactly the name's bytes, never another file's.
const ESCAPE_BASE: u32 = 0x10FF00;
const ESCAPES: std::ops::RangeInclusive<u32> = ESCAPE_BASE + 0x80..=ESCAPE_BASE + 0xFF;

/// A name from the outside world as a string that keeps every byte.
pub fn encode_os(s: &OsStr) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let escape = |out: &mut String, b: u8| {
        out.push(char::from_u32(ESCAPE_BASE + u32::from(b)).unwrap_or('\u{FFFD}'));
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if ESCAPES.contains(&u32::from(c)) {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    escape(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            escape(&mut out, b);
        }
    }
    out
}

/// The bytes that `encode_os` stood for, after a template or CEL has worked on the text.
pub fn decode_os(s: &str) -> OsString {
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let v = u32::from(c);
        if ESCAPES.contains(&v) {
            out.push((v - ESCAPE_BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    OsString::from_vec(out)
}

/// For logs and JSON: escaped bytes shown as U+FFFD.
pub fn display_lossy(s: &str) -> String {
    decode_os(s).to_string_lossy().into_owned()
}

/// The event as JSON for people and programs: escaped bytes shown as U+FFFD.
pub fn event_json_lossy(fields: &Map<String, Value>) -> Value {
    lossy_within(fields, usize::MAX)
}

/// How deep an event's values are shown to the client tools (`status`, `tail`,
/// `explain`): JSON readers refuse documents nested past a limit (serde_json's is 128), and
/// a monitored endpoint's body must not blind them.
pub const SHOWN_DEPTH: usize = 32;

/// [`event_json_lossy`] for the client tools: values nested deeper than `SHOWN_DEPTH`
/// are shown as a string that says so.
pub fn event_json_shown(fields: &Map<String, Value>) -> Value {
    lossy_within(fields, SHOWN_DEPTH)
}

fn lossy_within(fields: &Map<String, Value>, depth: usize) -> Value {
    fn lossy(v: &Value, depth: usize) -> Value {
        match v {
            Value::String(s) => Value::from(display_lossy(s)),
            Value::Array(_) | Value::Object(_) if depth == 0 => {
                Value::from(format!("[nested deeper than {SHOWN_DEPTH} levels]"))
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| lossy(x, depth - 1)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), lossy(v, depth - 1)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), lossy(v, depth)))
            .collect(),
    )
}

/// A duration for people: whole seconds from one second up (`4m 12s`), else milliseconds.
pub fn human_duration(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    humantime::format_duration(rounded).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invalid_utf8_survives_a_round_trip() {
        let raw = OsStr::from_bytes(b"caf\xe9 \xff$(x)");
        let enc = encode_os(raw);
        assert!(enc.starts_with("caf"));
        assert_eq!(decode_os(&enc), raw);
    }

    #[test]
    fn a_real_name_holding_an_escape_character_is_not_another_files_bytes() {
        // Regression: U+10FFAF in a valid name decoded to the single byte 0xAF, the name
        // of a different file.
        let real = OsStr::new("decoy-\u{10FFAF}.txt");
        let other = OsStr::from_bytes(b"decoy-\xaf.txt");
        assert_eq!(decode_os(&encode_os(real)), real);
        assert_eq!(decode_os(&encode_os(other)), other);
        assert_ne!(encode_os(real), encode_os(other));
    }

    proptest! {
        #[test]
        fn names_with_private_use_characters_round_trip(s in "[a\u{10FF70}-\u{10FFFF}\u{FFFD}/]{0,16}") {
            let raw = OsStr::new(&s);
            prop_assert_eq!(decode_os(&encode_os(raw)), raw.to_os_string());
        }

        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let raw = OsStr::from_bytes(&bytes);
            prop_assert_eq!(decode_os(&encode_os(raw)), raw.to_os_string());
        }

        #[test]
        fn valid_utf8_is_unchanged(s in "\\PC*") {
            prop_assert_eq!(encode_os(OsStr::new(&s)), s);
        }
    }
}
