//! What `hark status`, `/api/status` and the page show.

use serde::{Deserialize, Serialize};

/// What `hark status` shows. Times are RFC 3339.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started: String,
    pub config_files: Vec<String>,
    pub watches: Vec<WatchStatus>,
    pub rules: Vec<RuleStatus>,
    pub actions: ActionStatus,
    pub outbox: OutboxStatus,
    pub last_reload: Option<ReloadStatus>,
    /// Where the time goes: check durations, event lag, action waits and run times, and
    /// the runtime's health.
    #[serde(default)]
    pub timing: crate::metrics::TimingStatus,
    /// Maintenance windows: the current and the next of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<WindowStatus>,
    /// The latest changes made through the control socket or the API, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangeStatus>,
    /// What the HTTP listener could not do (a certificate that did not load).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener_problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub events: u64,
    pub last_event: Option<String>,
    /// The last event's `error` field, when it had a non-empty one.
    pub last_error: Option<String>,
    /// The last event's fields.
    pub last: Option<serde_json::Value>,
    /// What the watch could not arm (a subtree it may not read, the inotify limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleStatus {
    pub name: String,
    pub watch: Option<String>,
    /// The group of a rule with `group_by`: its fields and values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<std::collections::BTreeMap<String, String>>,
    /// How many groups the rule holds, with `group_by` (only some are listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    /// `ok`, `pending` or `firing`.
    pub state: String,
    pub since: Option<String>,
    /// `Some("")` when silenced with no end.
    pub silenced_until: Option<String>,
    /// Who silenced it, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_comment: Option<String>,
    /// The maintenance window it is in now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
    /// For a rule that expects a match: when one is due by (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_by: Option<String>,
    /// While firing: the summary of its latest firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionStatus {
    pub running: usize,
    pub queued: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutboxStatus {
    pub pending: usize,
    pub oldest_pending: Option<String>,
    pub failed: Vec<FailedDelivery>,
    /// Pending deliveries being tried again: their attempts, last error and next try.
    #[serde(default)]
    pub retrying: Vec<crate::action::outbox::Entry>,
    /// Why the outbox could not be read, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailedDelivery {
    pub rule: String,
    pub action: String,
    pub state: String,
    pub accepted: String,
    pub attempts: u32,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub time: String,
    pub ok: bool,
    /// The configuration errors of a reload that was refused.
    pub errors: Vec<String>,
}

/// One change made through the control socket or the API: when, by whom, what.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeStatus {
    pub time: String,
    pub by: String,
    pub what: String,
}

/// A maintenance window as status shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowStatus {
    pub name: String,
    pub rules: Vec<String>,
    /// RFC 3339: when the window open now ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_end: Option<String>,
    /// The next window as written in its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_local: Option<String>,
}
