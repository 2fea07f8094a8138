//! `[maintenance.NAME]`: planned quiet for some rules (`rules`, names or globs), on a
//! schedule (`schedule`, cron, and `duration`) or once (`from`, `until`), in `timezone`.
//! Inside a window the rules' firings run no action, as under `hark silence`.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::expect::{self, Schedule};
use super::table::deserialize_table;
use super::{values, Ctx};

#[derive(Debug, Clone)]
pub struct Maintenance {
    pub name: String,
    /// The names and globs as written.
    pub rules: Vec<String>,
    matcher: Arc<globset::GlobSet>,
    pub when: Window,
    /// The names in `rules` that are not globs, and where: each must name a rule.
    pub(crate) literal: Vec<(String, super::Location)>,
}

#[derive(Debug, Clone)]
pub enum Window {
    /// From each scheduled time, for `duration`.
    Repeating {
        schedule: Box<Schedule>,
        duration: Duration,
    },
    /// Once.
    Once {
        from: SystemTime,
        until: SystemTime,
        zone: jiff::tz::TimeZone,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    rules: Spanned<Vec<Spanned<String>>>,
    schedule: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    name: &str,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<Maintenance> {
    let raw: RawMaintenance = deserialize_table(ctx, table, span.clone())?;
    let mut builder = globset::GlobSetBuilder::new();
    if raw.rules.get_ref().is_empty() {
        ctx.error(raw.rules.span(), "`rules` is empty: name rules or globs");
    }
    let mut literal = Vec::new();
    for r in raw.rules.get_ref() {
        if !r.get_ref().contains(['*', '?', '[', '{']) {
            literal.push((r.get_ref().clone(), ctx.loc(r.span())));
        }
        match globset::Glob::new(r.get_ref()) {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => ctx.error(r.span(), format!("invalid glob: {e}")),
        }
    }
    let matcher = builder.build().ok()?;
    let when = match (&raw.schedule, &raw.from) {
        (Some(s), None) => repeating(ctx, s, &raw)?,
        (None, Some(f)) => once(ctx, f, &raw)?,
        (Some(s), Some(_)) => {
            ctx.error(
                s.span(),
                "`schedule` (with `duration`) and `from`/`until` cannot be combined",
            );
            return None;
        }
        (None, None) => {
            ctx.error(
                span,
                format!(
                    "maintenance `{name}` needs `schedule` and `duration` (a window that \
                     repeats) or `from` and `until` (once)"
                ),
            );
            return None;
        }
    };
    Some(Maintenance {
        name: name.to_string(),
        rules: raw
            .rules
            .get_ref()
            .iter()
            .map(|r| r.get_ref().clone())
            .collect(),
        matcher: Arc::new(matcher),
        when,
        literal,
    })
}

fn repeating(ctx: &mut Ctx, text: &Spanned<String>, raw: &RawMaintenance) -> Option<Window> {
    if let Some(u) = &raw.until {
        ctx.error(
            u.span(),
            "`until` goes with `from`; a schedule takes `duration`",
        );
    }
    let Some(d) = &raw.duration else {
        ctx.error(
            text.span(),
            "a `schedule` needs `duration`: how long each window lasts",
        );
        return None;
    };
    let schedule = expect::cron(ctx, text, &raw.timezone)?;
    let duration = values::duration(ctx, d)?;
    if duration.is_zero() {
        ctx.error(d.span(), "`duration` must be longer than zero");
        return None;
    }
    let why = "windows would overlap";
    expect::fits(ctx, &schedule, ("duration", duration), d.span(), why).then(|| Window::Repeating {
        schedule: Box::new(schedule),
        duration,
    })
}

fn once(ctx: &mut Ctx, from: &Spanned<String>, raw: &RawMaintenance) -> Option<Window> {
    if let Some(d) = &raw.duration {
        ctx.error(
            d.span(),
            "`duration` goes with `schedule`; `from` takes `until`",
        );
    }
    let Some(until) = &raw.until else {
        ctx.error(from.span(), "`from` needs `until`: when the window ends");
        return None;
    };
    let (zone, _) = expect::zone(ctx, &raw.timezone)?;
    let start = time(ctx, from, &zone);
    let end = time(ctx, until, &zone)?;
    let start = start?;
    if end <= start {
        ctx.error(until.span(), "`until` must be after `from`");
        return None;
    }
    Some(Window::Once {
        from: start,
        until: end,
        zone,
    })
}

/// An RFC 3339 time, or a date and time on the wall clock of `zone`
/// ("2026-12-24 18:00").
fn time(ctx: &mut Ctx, value: &Spanned<String>, zone: &jiff::tz::TimeZone) -> Option<SystemTime> {
    let text = value.get_ref().trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(SystemTime::from(ts));
    }
    match text.parse::<jiff::civil::DateTime>() {
        Ok(dt) => match dt.to_zoned(zone.clone()) {
            Ok(z) => Some(SystemTime::from(z.timestamp())),
            Err(e) => {
                ctx.error(value.span(), format!("{text:?}: {e}"));
                None
            }
        },
        Err(_) => {
            ctx.error(
                value.span(),
                format!(
                    "{text:?} is not a time: write \"2026-12-24 18:00\" (in `timezone`) or \
                     RFC 3339 (\"2026-12-24T18:00:00+01:00\")"
                ),
            );
            None
        }
    }
}

impl Maintenance {
    /// Whether it covers rule `rule`.
    pub fn covers(&self, rule: &str) -> bool {
        self.matcher.is_match(rule)
    }

    /// The window `now` is in: its start and end.
    pub fn current(&self, now: SystemTime) -> Option<(SystemTime, SystemTime)> {
        match &self.when {
            Window::Once { from, until, .. } => {
                (*from <= now && now < *until).then_some((*from, *until))
            }
            Window::Repeating { schedule, duration } => {
                // The first start after `now - duration`: if it is not later than now,
                // `now` is inside its window.
                let after = now.checked_sub(*duration)?;
                let start = schedule.next_after(after)?;
                (start <= now).then_some((start, start + *duration))
            }
        }
    }

    /// The next window that starts after `now`.
    pub fn next(&self, now: SystemTime) -> Option<(SystemTime, SystemTime)> {
        match &self.when {
            Window::Once { from, until, .. } => (*from > now).then_some((*from, *until)),
            Window::Repeating { schedule, duration } => {
                let start = schedule.next_after(now)?;
                Some((start, start + *duration))
            }
        }
    }

    /// A time in the window's zone.
    pub fn show(&self, t: SystemTime) -> String {
        match &self.when {
            Window::Repeating { schedule, .. } => schedule.show(t),
            Window::Once { zone, .. } => expect::show_in(zone, t),
        }
    }
}
