//! What a rule expects to happen: `expect_within` (a match at least this often) or
//! `expect` (a cron schedule, with `grace` and `timezone`), and `expect_groups`, the
//! groups that must appear. Cron expressions are croner's (Vixie cron's fields, seconds
//! optional in front); zones are the host's database (/usr/share/zoneinfo) through jiff.

use std::collections::HashMap;
use std::ops::Range;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use toml::Spanned;

use super::values;
use super::Ctx;

/// What a rule expects.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub expect: Expect,
    /// Group keys (as `group_by` makes them) that must appear, matched once or not.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Expect {
    /// A match at least this often: it fires when none came for this long.
    Within(Duration),
    /// A match after each scheduled time, before `grace` ends.
    Schedule(Box<Schedule>),
}

/// A cron schedule in a zone, with its grace.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub text: String,
    cron: Arc<croner::Cron>,
    pub grace: Duration,
    pub zone: jiff::tz::TimeZone,
    /// The zone's IANA name, or "the host's zone".
    pub zone_name: String,
}

/// How far ahead schedules are looked at for their period.
const PERIOD_SAMPLES: usize = 64;
/// How far past the first scheduled time they are looked at: a year and a month.
const PERIOD_SPAN: Duration = Duration::from_secs(400 * 24 * 3600);

impl Schedule {
    /// The first scheduled time strictly after `after`; none for a schedule that never
    /// comes again. In a DST gap a time is taken at the first instant after it (a 02:30
    /// job on the spring-forward day is due at 03:00); in an overlap, once, at the first.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let ts = jiff::Timestamp::try_from(after).ok()?;
        let zoned = ts.to_zoned(self.zone.clone());
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        Some(SystemTime::from(next.timestamp()))
    }

    /// When a match is due by, for a window that starts at `from`: the next scheduled
    /// time after it, plus the grace.
    pub fn due_after(&self, from: SystemTime) -> Option<SystemTime> {
        self.next_after(from).map(|t| t + self.grace)
    }

    /// A time as written in the schedule's zone: `2026-12-08 03:30:00 CET`.
    pub fn show(&self, t: SystemTime) -> String {
        show_in(&self.zone, t)
    }

    /// The shortest time between two scheduled times, over the next ones from `from`
    /// (at most `PERIOD_SAMPLES` of them, within `PERIOD_SPAN` of the first, past which
    /// the calendar repeats: a yearly schedule is not walked for 64 years).
    fn period(&self, from: SystemTime) -> Option<(Duration, SystemTime)> {
        let first = self.next_after(from)?;
        let mut at = first;
        let mut shortest: Option<(Duration, SystemTime)> = None;
        for _ in 0..PERIOD_SAMPLES {
            if at.duration_since(first).unwrap_or_default() > PERIOD_SPAN {
                break;
            }
            let Some(next) = self.next_after(at) else {
                break;
            };
            let gap = next.duration_since(at).unwrap_or_default();
            if shortest.is_none_or(|(s, _)| gap < s) {
                shortest = Some((gap, at));
            }
            at = next;
        }
        shortest
    }
}

/// A time as written in `zone`, with its abbreviation.
pub fn show_in(zone: &jiff::tz::TimeZone, t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        // Past jiff's range (years beyond 9999): no zone to show it in.
        Err(_) => humantime::format_rfc3339(t).to_string(),
    }
}

/// The schedules of one file read so far, so rules that share an expression share its
/// parse (croner keeps about 5 KiB per expression: a table of its years) and its check.
#[derive(Default)]
pub(crate) struct Crons {
    parsed: HashMap<String, Arc<croner::Cron>>,
    /// By expression and zone: whether it fires again, and its shortest period and from
    /// when.
    periods: HashMap<(String, String), Judged>,
}

type Judged = (bool, Option<(Duration, SystemTime)>);

/// The keys of a rule about what it expects, as written.
pub(crate) struct RawExpect<'a> {
    pub within: &'a Option<Spanned<String>>,
    pub expect: &'a Option<Spanned<String>>,
    pub grace: &'a Option<Spanned<String>>,
    pub timezone: &'a Option<Spanned<String>>,
    pub groups: &'a Option<Spanned<Vec<Spanned<String>>>>,
}

pub(crate) fn parse(ctx: &mut Ctx, raw: RawExpect<'_>, group_by: &[String]) -> Option<Expectation> {
    for (key, value) in [("grace", raw.grace), ("timezone", raw.timezone)] {
        if let (Some(v), None) = (value, raw.expect) {
            ctx.error(
                v.span(),
                format!("`{key}` applies to `expect` (a cron schedule): set `expect` too"),
            );
        }
    }
    let expect = match (raw.within, raw.expect) {
        (None, None) => {
            if let Some(g) = raw.groups {
                ctx.error(
                    g.span(),
                    "`expect_groups` needs `expect_within` or `expect`",
                );
            }
            return None;
        }
        (Some(_), Some(e)) => {
            ctx.error(
                e.span(),
                "`expect` and `expect_within` cannot be combined: a match on a schedule, or a \
                 match at least this often",
            );
            return None;
        }
        (Some(w), None) => {
            let d = values::duration(ctx, w)?;
            if d.is_zero() {
                ctx.error(w.span(), "`expect_within` must be longer than zero");
                return None;
            }
            Expect::Within(d)
        }
        (None, Some(e)) => Expect::Schedule(Box::new(schedule(ctx, e, raw.grace, raw.timezone)?)),
    };
    let groups = expect_groups(ctx, raw.groups, group_by);
    Some(Expectation { expect, groups })
}

/// The grace when none is given: a scheduled job is allowed this long to report.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

fn schedule(
    ctx: &mut Ctx,
    expect: &Spanned<String>,
    grace: &Option<Spanned<String>>,
    timezone: &Option<Spanned<String>>,
) -> Option<Schedule> {
    let mut schedule = cron(ctx, expect, timezone)?;
    schedule.grace = values::optional_duration(ctx, grace).unwrap_or(DEFAULT_GRACE);
    let span = grace.as_ref().map_or(expect.span(), |g| g.span());
    let why = "the next run would be due before the last one's grace ends";
    fits(ctx, &schedule, ("grace", schedule.grace), span, why).then_some(schedule)
}

/// A cron schedule (no grace) in the zone `timezone` names; an error at `text` when it
/// does not parse or never fires.
pub(crate) fn cron(
    ctx: &mut Ctx,
    text: &Spanned<String>,
    timezone: &Option<Spanned<String>>,
) -> Option<Schedule> {
    let written = text.get_ref().trim();
    let parsed = match ctx.crons.parsed.get(written) {
        Some(c) => Ok(Arc::clone(c)),
        None => croner::Cron::from_str(written).map(Arc::new),
    };
    let cron = match parsed {
        Ok(c) => {
            ctx.crons.parsed.insert(written.to_string(), Arc::clone(&c));
            c
        }
        Err(e) => {
            ctx.error(
                text.span(),
                format!(
                    "invalid cron expression {written:?}: {e} (five fields, minute hour \
                     day-of-month month day-of-week, as \"0 3 * * *\"; a sixth in front for \
                     seconds)"
                ),
            );
            return None;
        }
    };
    let (zone, zone_name) = zone(ctx, timezone)?;
    let schedule = Schedule {
        text: written.to_string(),
        cron,
        grace: Duration::ZERO,
        zone,
        zone_name,
    };
    if !judged(ctx, &schedule).0 {
        ctx.error(
            text.span(),
            format!(
                "the cron expression {written:?} never fires (no such date in the coming years)"
            ),
        );
        return None;
    }
    Some(schedule)
}

/// Whether a span of time after each scheduled time (`what`: its key and length) ends
/// before the next one; an error at `span` saying `why` it must when it does not.
pub(crate) fn fits(
    ctx: &mut Ctx,
    schedule: &Schedule,
    what: (&str, Duration),
    span: Range<usize>,
    why: &str,
) -> bool {
    let Some((period, at)) = judged(ctx, schedule).1 else {
        return true;
    };
    if what.1 <= period {
        return true;
    }
    ctx.error(
        span,
        format!(
            "`{}` ({}) is longer than the schedule's period ({} from {}): {why}",
            what.0,
            humantime::format_duration(what.1),
            humantime::format_duration(period),
            schedule.show(at),
        ),
    );
    false
}

/// Whether `schedule` fires again, and its shortest period: worked out once per
/// expression and zone in a file.
fn judged(ctx: &mut Ctx, schedule: &Schedule) -> Judged {
    let key = (schedule.text.clone(), schedule.zone_name.clone());
    if let Some(j) = ctx.crons.periods.get(&key) {
        return *j;
    }
    let now = SystemTime::now();
    let j = (schedule.next_after(now).is_some(), schedule.period(now));
    ctx.crons.periods.insert(key, j);
    j
}

/// The zone named by `timezone`, or the host's.
pub(crate) fn zone(
    ctx: &mut Ctx,
    timezone: &Option<Spanned<String>>,
) -> Option<(jiff::tz::TimeZone, String)> {
    let Some(name) = timezone else {
        return Some((jiff::tz::TimeZone::system(), "the host's zone".to_string()));
    };
    let text = name.get_ref().trim();
    match jiff::tz::TimeZone::get(text) {
        Ok(z) => Some((z, text.to_string())),
        Err(_) => {
            let known: Vec<String> = jiff::tz::db()
                .available()
                .map(|n| n.as_str().to_string())
                .collect();
            let mut budget = usize::MAX;
            let hint = super::suggest::suggest(text, known.iter(), &mut budget);
            ctx.error(
                name.span(),
                format!(
                    "unknown time zone {text:?}{hint} (IANA names from the host's zone \
                     database, as \"Europe/Berlin\" or \"UTC\")"
                ),
            );
            None
        }
    }
}

/// `expect_groups`: values of the one `group_by` field, as group keys.
fn expect_groups(
    ctx: &mut Ctx,
    groups: &Option<Spanned<Vec<Spanned<String>>>>,
    group_by: &[String],
) -> Vec<String> {
    let Some(list) = groups else {
        return Vec::new();
    };
    if group_by.len() != 1 {
        ctx.error(
            list.span(),
            "`expect_groups` names values of the one field of `group_by` (as \
             group_by = [\"host\"], expect_groups = [\"web1\", \"web2\"])",
        );
        return Vec::new();
    }
    list.get_ref()
        .iter()
        .filter_map(|v| serde_json::to_string(&[v.get_ref()]).ok())
        .collect()
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
