//! `type = "systemd"` actions: a unit started, stopped, restarted or reloaded by systemd,
//! asked over D-Bus.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::values;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct SystemdAction {
    /// The unit's name: a template.
    pub unit: String,
    pub verb: Verb,
    /// How long to wait for the job's end.
    pub timeout: Duration,
}

/// What is asked of systemd; each is one method of its manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    Reload,
    TryRestart,
    ReloadOrRestart,
}

const VERBS: [(&str, Verb); 6] = [
    ("start", Verb::Start),
    ("stop", Verb::Stop),
    ("restart", Verb::Restart),
    ("reload", Verb::Reload),
    ("try-restart", Verb::TryRestart),
    ("reload-or-restart", Verb::ReloadOrRestart),
];

impl Verb {
    /// The manager's method (`org.freedesktop.systemd1.Manager`).
    pub fn method(self) -> &'static str {
        match self {
            Verb::Start => "StartUnit",
            Verb::Stop => "StopUnit",
            Verb::Restart => "RestartUnit",
            Verb::Reload => "ReloadUnit",
            Verb::TryRestart => "TryRestartUnit",
            Verb::ReloadOrRestart => "ReloadOrRestartUnit",
        }
    }

    pub fn as_str(self) -> &'static str {
        VERBS
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }
}

pub const DEFAULT_SYSTEMD_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystemd {
    unit: Spanned<String>,
    verb: Spanned<String>,
    timeout: Option<Spanned<String>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<SystemdAction> {
    let raw: RawSystemd = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    if raw.unit.get_ref().trim().is_empty() {
        ctx.error(raw.unit.span(), "`unit` is empty: name the unit to act on");
    }
    values::template(ctx, templates, &raw.unit);
    let verb = VERBS
        .iter()
        .find(|(n, _)| *n == raw.verb.get_ref())
        .map(|(_, v)| *v);
    if verb.is_none() {
        let names: Vec<&str> = VERBS.iter().map(|(n, _)| *n).collect();
        ctx.error(
            raw.verb.span(),
            format!("unknown verb: expected one of {}", names.join(", ")),
        );
    }
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_SYSTEMD_TIMEOUT);
    if ctx.errors.len() != before {
        return None;
    }
    Some(SystemdAction {
        unit: raw.unit.into_inner(),
        verb: verb?,
        timeout,
    })
}
