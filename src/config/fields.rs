//! The fields each watch type's events carry, and their types: the tables of
//! docs/configuration.md, so `validate` can tell a condition that names a field no event
//! of its watches has (`stauts == 200`), or compares one with a value of another type
//! (`status == "200"`), from one that will match. Fields a watch cannot know in advance
//! (a JSON line's keys) leave the set open; a log pattern's named groups are known.

use super::WatchKind;

/// What a condition can know of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A whole number or a fraction (CEL compares the two as a person expects).
    Number,
    String,
    Bool,
    /// A map or a list, or anything (a parsed JSON body).
    Other,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Number => "a number",
            FieldType::String => "a string",
            FieldType::Bool => "a bool",
            FieldType::Other => "a map or list",
        }
    }
}

/// The fields of a watch's events.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub known: Vec<(String, FieldType)>,
    /// Any other name may be there too (a JSON line's keys).
    pub open: bool,
}

impl Fields {
    pub fn get(&self, name: &str) -> Option<FieldType> {
        self.known.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    /// Both sets: a rule over several watches sees the events of each.
    pub fn union(mut self, other: Fields) -> Fields {
        for (n, t) in other.known {
            match self.known.iter_mut().find(|(k, _)| *k == n) {
                // One name, two types across watches: nothing can be said of its type.
                Some((_, have)) if *have != t => *have = FieldType::Other,
                Some(_) => {}
                None => self.known.push((n, t)),
            }
        }
        self.open |= other.open;
        self
    }
}

use FieldType::{Bool, Number, Other, String as Str};

/// Every event has these.
const COMMON: &[(&str, FieldType)] = &[("watch", Str), ("type", Str), ("time", Str), ("host", Str)];

impl WatchKind {
    /// The fields of this watch's events (docs/configuration.md, one table per type).
    pub fn fields(&self) -> Fields {
        let (own, open): (&[(&str, FieldType)], bool) = match self {
            WatchKind::File(_) => (FILE, false),
            WatchKind::Http(_) => (HTTP, false),
            WatchKind::Process(_) => (PROCESS, false),
            WatchKind::System(_) => (SYSTEM, false),
            WatchKind::Tcp(_) => (TCP, false),
            WatchKind::Command(_) => (COMMAND, false),
            WatchKind::Log(l) => (LOG, l.json),
            WatchKind::Journal(_) => (JOURNAL, false),
            WatchKind::Unit(_) => (UNIT, false),
            WatchKind::Heartbeat(_) => (HEARTBEAT, false),
            // A push's body and query are fields of any name.
            WatchKind::Push(_) => (PUSH, true),
            WatchKind::Dns(_) => (DNS, false),
            WatchKind::Ping(_) => (PING, false),
            WatchKind::Certificate(_) => (CERTIFICATE, false),
            WatchKind::Container(_) => (CONTAINER, false),
        };
        let mut known: Vec<(String, FieldType)> = COMMON
            .iter()
            .chain(own)
            .map(|(n, t)| (n.to_string(), *t))
            .collect();
        let pattern = match self {
            WatchKind::Log(l) => l.pattern.as_deref(),
            WatchKind::Journal(j) => j.pattern.as_deref(),
            _ => None,
        };
        for group in pattern
            .into_iter()
            .flat_map(|p| p.capture_names().flatten())
        {
            if !known.iter().any(|(n, _)| n == group) {
                known.push((group.to_string(), Str));
            }
        }
        Fields { known, open }
    }
}

const DNS: &[(&str, FieldType)] = &[
    ("rcode", Str),
    ("answers", Other),
    ("answers_count", Number),
    ("ttl_min", Number),
    ("authoritative", Bool),
    ("latency_ms", Number),
    ("server", Str),
    ("tcp", Bool),
    ("error", Str),
    ("name", Str),
    ("record", Str),
    ("changed", Bool),
];

const PING: &[(&str, FieldType)] = &[
    ("host", Str),
    ("address", Str),
    ("sent", Number),
    ("received", Number),
    ("loss", Number),
    ("rtt_min_ms", Number),
    ("rtt_avg_ms", Number),
    ("rtt_max_ms", Number),
    ("rtt_mdev_ms", Number),
    ("error", Str),
];

const CERTIFICATE: &[(&str, FieldType)] = &[
    ("ok", Bool),
    ("error", Str),
    ("path", Str),
    ("address", Str),
    ("starttls", Str),
    ("latency_ms", Number),
    ("not_after", Str),
    ("not_before", Str),
    ("days_left", Number),
    ("subject", Str),
    ("issuer", Str),
    ("sans", Other),
    ("serial", Str),
    ("chain_ok", Bool),
    ("chain_length", Number),
    ("key_matches", Bool),
];

const CONTAINER: &[(&str, FieldType)] = &[
    ("kind", Str),
    ("id", Str),
    ("name", Str),
    ("image", Str),
    ("state", Str),
    ("exit_code", Number),
    ("health", Str),
    ("oom_killed", Bool),
    ("restart_count", Number),
    ("labels", Other),
    ("rescan", Bool),
];

const PUSH: &[(&str, FieldType)] = &[
    ("kind", Str),
    ("exit_code", Number),
    ("client", Str),
    ("method", Str),
    ("body", Str),
    ("token", Str),
];

const HEARTBEAT: &[(&str, FieldType)] = &[
    ("kind", Str),
    ("exit_code", Number),
    ("duration_ms", Number),
    ("output", Str),
    ("output_truncated", Bool),
    ("command", Str),
    ("error", Str),
    ("pid", Number),
];

const FILE: &[(&str, FieldType)] = &[
    ("kind", Str),
    ("path", Str),
    ("old_path", Str),
    ("exists", Bool),
    ("size", Number),
    ("mode", Str),
    ("uid", Number),
    ("gid", Number),
    ("mtime", Str),
    ("sha256", Str),
    ("rescan", Bool),
];

const HTTP: &[(&str, FieldType)] = &[
    ("ok", Bool),
    ("status", Number),
    ("error", Str),
    ("latency_ms", Number),
    ("body", Str),
    ("json", Other),
    ("headers", Other),
    ("cert_expiry_days", Number),
    ("url", Str),
    ("method", Str),
];

const PROCESS: &[(&str, FieldType)] = &[
    ("kind", Str),
    ("pid", Number),
    ("name", Str),
    ("cmdline", Str),
    ("count", Number),
    ("cpu_percent", Number),
    ("memory_bytes", Number),
    ("threads", Number),
    ("uptime_s", Number),
    ("exit_code", Number),
    ("signal", Number),
];

const SYSTEM: &[(&str, FieldType)] = &[
    ("cpu_percent", Number),
    ("load1", Number),
    ("load5", Number),
    ("load15", Number),
    ("memory_used_percent", Number),
    ("swap_used_percent", Number),
    ("disks", Other),
];

const TCP: &[(&str, FieldType)] = &[
    ("connected", Bool),
    ("latency_ms", Number),
    ("error", Str),
    ("address", Str),
];

const COMMAND: &[(&str, FieldType)] = &[
    ("exit_code", Number),
    ("stdout", Str),
    ("stderr", Str),
    ("output", Str),
    ("duration_ms", Number),
    ("status", Str),
    ("error", Str),
];

/// The fields a log line's event carries whatever its pattern captures.
pub(super) fn log_fields() -> Vec<&'static str> {
    COMMON.iter().chain(LOG).map(|(n, _)| *n).collect()
}

/// The fields a journal entry's event carries whatever its pattern captures.
pub(super) fn journal_fields() -> Vec<&'static str> {
    COMMON.iter().chain(JOURNAL).map(|(n, _)| *n).collect()
}

const LOG: &[(&str, FieldType)] = &[
    ("line", Str),
    ("path", Str),
    ("offset", Number),
    ("truncated", Bool),
    ("json_error", Str),
];

const JOURNAL: &[(&str, FieldType)] = &[
    ("message", Str),
    ("priority", Number),
    ("unit", Str),
    ("identifier", Str),
    ("pid", Number),
    ("cursor", Str),
    ("fields", Other),
];

const UNIT: &[(&str, FieldType)] = &[
    ("kind", Str),
    ("unit", Str),
    ("active_state", Str),
    ("sub_state", Str),
    ("result", Str),
    ("load_state", Str),
    ("since", Str),
    ("n_restarts", Number),
    ("main_pid", Number),
    ("error", Str),
];
