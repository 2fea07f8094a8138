//! `[rule.NAME]`: which watches it hears, its CEL condition, what it runs.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::condition::{self, Condition};
use super::diagnostic::Location;
use super::expect::{self, Expectation, RawExpect};
use super::rule_values::{check_label_name, during_cooldown, parse_trigger_limit};
use super::table::deserialize_table;
use super::values::{self, NameList};
use super::Ctx;

/// The most groups one rule may hold: about 1 KiB each (measured ~770 bytes with its key
/// and window), so a million is about 1 GiB, what a host can spare for one rule.
pub const MAX_MAX_GROUPS: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct RuleConfig {
    pub name: String,
    /// The rule's TOML, normalised: a reload keeps all the state of a rule that did not
    /// change.
    pub definition: String,
    pub watches: Vec<String>,
    /// `None`: every event of the named watches matches.
    pub when: Option<Condition>,
    pub then: Vec<String>,
    /// Actions run once when a firing rule recovers.
    pub resolve: Vec<String>,
    pub threshold: Threshold,
    /// While firing, `then` runs again this often.
    pub repeat: Option<Duration>,
    pub cooldown: Option<Duration>,
    /// `during_cooldown = "drop"`: matches inside the cooldown are dropped, not held
    /// until it ends.
    pub drop_in_cooldown: bool,
    /// A burst of matches inside this window is one firing.
    pub debounce: Option<Duration>,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
    pub unless: Vec<String>,
    /// `None` when switched off with `trigger_limit = "off"`.
    pub trigger_limit: Option<TriggerLimit>,
    /// One state (counters, firing, cooldown) per distinct value of these fields.
    pub group_by: Vec<String>,
    /// At most this many groups live at once; the least recently seen go first.
    pub max_groups: usize,
    /// On event watches: a firing group resolves this long after its last match.
    pub resolve_after: Option<Duration>,
    /// `expect_within` or `expect`: it fires on a match that did not come.
    pub expectation: Option<Expectation>,
}

pub const DEFAULT_MAX_GROUPS: usize = 10_000;

/// What turns matching state events into a firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// `times = N`: N consecutive matching samples (1 when nothing is set).
    Consecutive(u32),
    /// `times = N` and `within = D`: N matching samples in any window of D.
    Window { times: u32, within: Duration },
    /// `for = D`: every sample matched for at least D.
    HeldFor(Duration),
}

/// At most `burst` firings in any `interval`, as systemd's `TriggerLimitBurst=` and
/// `TriggerLimitIntervalSec=`: it stops an action that changes the files its own rule
/// watches from looping forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerLimit {
    pub burst: u32,
    pub interval: Duration,
}

/// Loose enough for a burst of a hundred legitimate files, tight enough to stop a loop at
/// the default debounce (about ten firings a second) within ten seconds.
pub const DEFAULT_TRIGGER_LIMIT: TriggerLimit = TriggerLimit {
    burst: 100,
    interval: Duration::from_secs(10),
};

/// A rule as parsed from one file, with the places of the names it refers to, so a
/// reference that does not resolve is reported where it is written.
pub(crate) struct RawRuleChecked {
    /// It had errors of its own: its references are still checked.
    pub broken: bool,
    pub rule: RuleConfig,
    /// Where `when` is, to say where in it a field is unknown or of another type.
    pub when_at: Option<Location>,
    pub watch_refs: Vec<(String, Location)>,
    pub action_refs: Vec<(String, Location)>,
    pub unless_refs: Vec<(String, Location)>,
    /// Keys that only state watches use, with their places, so a rule over edge watches
    /// alone is told they would do nothing.
    pub state_keys: Vec<(&'static str, Location)>,
    /// Keys that only event watches use (`resolve_after`), likewise.
    pub edge_keys: Vec<(&'static str, Location)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) watch: Spanned<NameList>,
    pub(super) when: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) then: Option<Spanned<NameList>>,
    pub(super) resolve: Option<Spanned<NameList>>,
    pub(super) cooldown: Option<Spanned<String>>,
    pub(super) during_cooldown: Option<Spanned<String>>,
    pub(super) debounce: Option<Spanned<String>>,
    pub(super) times: Option<Spanned<i64>>,
    pub(super) within: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub(super) hold_for: Option<Spanned<String>>,
    pub(super) repeat: Option<Spanned<String>>,
    pub(super) severity: Option<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<Spanned<String>, String>,
    pub(super) summary: Option<Spanned<String>>,
    pub(super) unless: Option<Spanned<NameList>>,
    pub(super) trigger_limit: Option<Spanned<String>>,
    pub(super) group_by: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) max_groups: Option<Spanned<i64>>,
    pub(super) resolve_after: Option<Spanned<String>>,
    pub(super) expect_within: Option<Spanned<String>>,
    pub(super) expect: Option<Spanned<String>>,
    pub(super) grace: Option<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) expect_groups: Option<Spanned<Vec<Spanned<String>>>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    name: &str,
    table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<RawRuleChecked> {
    let before = ctx.errors.len();
    let raw: RawRule = deserialize_table(ctx, table, span)?;
    let windowed = raw.within.is_some();
    let resolving = raw.resolve_after.is_some();
    let (state_keys, edge_keys) = kind_keys(ctx, &raw);
    let group_by = group_by(ctx, &raw);
    let max_groups = max_groups(ctx, &raw);
    let resolve_after = positive_duration(ctx, &raw.resolve_after, "resolve_after");
    if let Some(d) = &raw.debounce {
        if !group_by.is_empty() || windowed || resolving {
            ctx.error(
                d.span(),
                "`debounce` does not combine with `group_by`, `within` or `resolve_after`: \
                 those count matching events per group (use `cooldown` to space firings)",
            );
        }
    }
    let expectation = expectation(ctx, &raw, &group_by);
    let threshold = threshold(ctx, &raw);
    let repeat = positive_duration(ctx, &raw.repeat, "repeat");
    let watch_refs = name_refs(ctx, &Some(raw.watch.clone()));
    if watch_refs.is_empty() {
        ctx.error(
            raw.watch.span(),
            "`watch` is empty: name at least one watch",
        );
    }
    let action_refs = name_refs(ctx, &raw.then);
    let resolve_refs = name_refs(ctx, &raw.resolve);
    let unless_refs = name_refs(ctx, &raw.unless);
    let when = raw.when.as_ref().and_then(|w| condition::condition(ctx, w));
    let cooldown = values::optional_duration(ctx, &raw.cooldown);
    let drop_in_cooldown = during_cooldown(ctx, &raw);
    let debounce = values::optional_duration(ctx, &raw.debounce);
    if let Some(s) = &raw.summary {
        values::template(ctx, templates, s);
    }
    for k in raw.labels.keys() {
        check_label_name(ctx, k);
    }
    let trigger_limit = match &raw.trigger_limit {
        None => Some(DEFAULT_TRIGGER_LIMIT),
        Some(v) => parse_trigger_limit(ctx, v)?,
    };
    // A rule with errors is still handed on, so its references are checked in the same
    // run (a bad action name is not hidden behind a type error); no configuration is
    // made of it.
    let broken = ctx.errors.len() != before;
    Some(RawRuleChecked {
        broken,
        when_at: raw.when.as_ref().map(|w| ctx.loc(w.span())),
        rule: RuleConfig {
            name: name.to_string(),
            definition: String::new(),
            watches: watch_refs.iter().map(|(n, _)| n.clone()).collect(),
            when,
            then: action_refs.iter().map(|(n, _)| n.clone()).collect(),
            resolve: resolve_refs.iter().map(|(n, _)| n.clone()).collect(),
            threshold: threshold?,
            repeat,
            cooldown,
            drop_in_cooldown,
            debounce,
            severity: raw.severity.unwrap_or_else(|| "warning".to_string()),
            labels: raw
                .labels
                .into_iter()
                .map(|(k, v)| (k.into_inner(), v))
                .collect(),
            summary: raw.summary.map(Spanned::into_inner),
            unless: unless_refs.iter().map(|(n, _)| n.clone()).collect(),
            trigger_limit,
            group_by,
            max_groups,
            resolve_after,
            expectation,
        },
        watch_refs,
        action_refs: action_refs.into_iter().chain(resolve_refs).collect(),
        unless_refs,
        state_keys,
        edge_keys,
    })
}

/// Keys, each with its place.
type Keys = Vec<(&'static str, Location)>;

/// Keys of state watches alone, and of event watches alone: on event watches, `times`
/// counts within `within` and `resolve` runs after `resolve_after`; without those, they
/// are keys of state watches.
fn kind_keys(ctx: &Ctx, raw: &RawRule) -> (Keys, Keys) {
    let windowed = raw.within.is_some();
    let resolving = raw.resolve_after.is_some();
    let expecting = raw.expect.is_some() || raw.expect_within.is_some();
    let state_keys: Keys = [
        (
            "times",
            raw.times.as_ref().filter(|_| !windowed).map(|v| v.span()),
        ),
        ("for", raw.hold_for.as_ref().map(|v| v.span())),
        ("repeat", raw.repeat.as_ref().map(|v| v.span())),
        (
            "resolve",
            raw.resolve
                .as_ref()
                .filter(|_| !resolving && !expecting)
                .map(|v| v.span()),
        ),
    ]
    .into_iter()
    .filter_map(|(k, span)| Some((k, ctx.loc(span?))))
    .collect();
    let edge_keys: Keys = [
        ("resolve_after", &raw.resolve_after),
        ("expect", &raw.expect),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, ctx.loc(v.as_ref()?.span()))))
    .collect();
    (state_keys, edge_keys)
}

fn group_by(ctx: &mut Ctx, raw: &RawRule) -> Vec<String> {
    match &raw.group_by {
        None => Vec::new(),
        Some(list) => {
            if list.get_ref().is_empty() {
                ctx.error(
                    list.span(),
                    "`group_by` is empty: name the fields to group by, or leave it out",
                );
            }
            for f in list.get_ref() {
                if f.get_ref().is_empty() {
                    ctx.error(f.span(), "an empty field name");
                }
            }
            list.get_ref().iter().map(|f| f.get_ref().clone()).collect()
        }
    }
}

fn max_groups(ctx: &mut Ctx, raw: &RawRule) -> usize {
    match &raw.max_groups {
        None => DEFAULT_MAX_GROUPS,
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(n) if (1..=MAX_MAX_GROUPS).contains(&n) => n,
            _ => {
                ctx.error(
                    m.span(),
                    format!(
                        "`max_groups` must be a whole number from 1 to {MAX_MAX_GROUPS} \
                         (each group holds about 1 KiB: a million is about 1 GiB)"
                    ),
                );
                DEFAULT_MAX_GROUPS
            }
        },
    }
}

/// An optional duration that, when given, must be longer than zero.
fn positive_duration(
    ctx: &mut Ctx,
    value: &Option<Spanned<String>>,
    key: &str,
) -> Option<std::time::Duration> {
    let d = values::optional_duration(ctx, value);
    if let (Some(d), Some(v)) = (d, value) {
        if d.is_zero() {
            ctx.error(v.span(), format!("`{key}` must be longer than zero"));
        }
    }
    d
}

/// Names listed in a key (`watch`, `then`, ...), each with its place.
fn name_refs(ctx: &Ctx, list: &Option<Spanned<NameList>>) -> Vec<(String, Location)> {
    list.iter()
        .flat_map(|l| {
            NameList::spanned(l)
                .map(|(n, s)| (n.to_string(), ctx.loc(s)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A window of more matches than this would hold that many timestamps per rule.
const MAX_TIMES: u32 = 100_000;

/// `times`, `times` + `within`, or `for`.
fn threshold(ctx: &mut Ctx, raw: &RawRule) -> Option<Threshold> {
    let times = match &raw.times {
        None => None,
        Some(t) => match u32::try_from(*t.get_ref()) {
            Ok(n) if (1..=MAX_TIMES).contains(&n) => Some(n),
            _ => {
                ctx.error(
                    t.span(),
                    format!("`times` must be a whole number from 1 to {MAX_TIMES}"),
                );
                return None;
            }
        },
    };
    let within = match &raw.within {
        None => None,
        Some(w) => {
            let d = values::duration(ctx, w)?;
            if d.is_zero() {
                ctx.error(w.span(), "`within` must be longer than zero");
                return None;
            }
            Some(d)
        }
    };
    let hold_for = values::optional_duration(ctx, &raw.hold_for);
    match (times, within, hold_for, &raw.hold_for) {
        (Some(_), _, Some(_), Some(f)) => {
            ctx.error(
                f.span(),
                "`for` and `times` cannot be combined: a rule fires after N matching samples \
                 (`times`, optionally `within`) or after its condition held for a duration (`for`)",
            );
            None
        }
        (None, Some(_), _, _) => {
            if let Some(w) = &raw.within {
                ctx.error(
                    w.span(),
                    "`within` needs `times`: N matching samples within this window",
                );
            }
            None
        }
        (_, _, Some(d), _) => Some(Threshold::HeldFor(d)),
        (Some(times), Some(within), None, _) => Some(Threshold::Window { times, within }),
        (times, None, None, _) => Some(Threshold::Consecutive(times.unwrap_or(1))),
    }
}

/// `expect_within` or `expect`, and what does not combine with them: a rule that expects
/// fires once when a match is missing and resolves at the next.
fn expectation(ctx: &mut Ctx, raw: &RawRule, group_by: &[String]) -> Option<Expectation> {
    let expected = expect::parse(
        ctx,
        RawExpect {
            within: &raw.expect_within,
            expect: &raw.expect,
            grace: &raw.grace,
            timezone: &raw.timezone,
            groups: &raw.expect_groups,
        },
        group_by,
    )?;
    let key = if raw.expect.is_some() {
        "expect"
    } else {
        "expect_within"
    };
    let spans = [
        ("debounce", raw.debounce.as_ref().map(|v| v.span())),
        ("cooldown", raw.cooldown.as_ref().map(|v| v.span())),
        ("times", raw.times.as_ref().map(|v| v.span())),
        ("within", raw.within.as_ref().map(|v| v.span())),
        ("for", raw.hold_for.as_ref().map(|v| v.span())),
        ("repeat", raw.repeat.as_ref().map(|v| v.span())),
        (
            "resolve_after",
            raw.resolve_after.as_ref().map(|v| v.span()),
        ),
    ];
    for (other, span) in spans {
        if let Some(span) = span {
            ctx.error(
                span,
                format!(
                    "`{other}` does not combine with `{key}`: a rule that expects a match fires \
                     once when it is missing and resolves at the next"
                ),
            );
        }
    }
    Some(expected)
}
