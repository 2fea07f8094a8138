//! `type = "journal"`: entries of the systemd journal (or of the journal files in
//! `directory`), filtered by `units`, `match` and `priority` where they are read, and by
//! `pattern` on MESSAGE (named groups become fields).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::values::start;
use super::values::NameList;
use super::Ctx;

/// A journal watch.
#[derive(Debug, Clone)]
pub struct JournalWatch {
    /// `_SYSTEMD_UNIT` globs; empty for every unit (and entries of none).
    pub units: Vec<String>,
    /// The same, matched here when one of them is a glob (journalctl matches exact values).
    pub unit_globs: Option<globset::GlobSet>,
    /// Journal fields and the values each may have: fields ANDed, values ORed.
    pub matches: BTreeMap<String, Vec<String>>,
    /// This priority or more urgent (0 emerg .. 7 debug).
    pub priority: Option<u8>,
    /// Only entries whose MESSAGE it matches become events; named groups become fields.
    pub pattern: Option<Arc<regex::Regex>>,
    /// Journal files there instead of the system journal.
    pub directory: Option<PathBuf>,
    /// A journal never read is read from its beginning (`start = "beginning"`), not from
    /// its end.
    pub from_beginning: bool,
}

const PRIORITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPriority {
    Level(i64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournalWatch {
    units: Option<Spanned<NameList>>,
    #[serde(rename = "match")]
    matches: Option<Spanned<BTreeMap<Spanned<String>, Spanned<NameList>>>>,
    priority: Option<Spanned<RawPriority>>,
    pattern: Option<Spanned<String>>,
    directory: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
}

/// A journal field name as journald accepts one: capitals, digits and `_`, not starting
/// with a digit (journalctl rejects the rest as matches).
fn field_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<JournalWatch> {
    let raw: RawJournalWatch = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    let (units, unit_globs) = units(ctx, &raw);
    let mut matches = BTreeMap::new();
    if let Some(m) = &raw.matches {
        for (field, values) in m.get_ref() {
            let name = field.get_ref();
            if !field_name_ok(name) {
                ctx.error(
                    field.span(),
                    format!(
                        "{name:?} is not a journal field name (capitals, digits and `_`, \
                         as `SYSLOG_IDENTIFIER` or `_TRANSPORT`)"
                    ),
                );
                continue;
            }
            if name == "_SYSTEMD_UNIT" && !units.is_empty() {
                ctx.error(
                    field.span(),
                    "`_SYSTEMD_UNIT` is chosen by `units` here: name the units there",
                );
                continue;
            }
            let list: Vec<String> = NameList::spanned(values)
                .map(|(v, _)| v.to_string())
                .collect();
            if list.is_empty() {
                ctx.error(values.span(), "no values: name at least one");
                continue;
            }
            matches.insert(name.clone(), list);
        }
    }
    let priority = priority(ctx, &raw);
    let taken = super::fields::journal_fields();
    let pattern = (raw.pattern.as_ref()).and_then(|p| super::values::field_pattern(ctx, p, &taken));
    let directory = raw.directory.as_ref().map(|d| {
        let p = PathBuf::from(d.get_ref());
        if p.is_absolute() {
            p
        } else {
            ctx.config_dir().join(p)
        }
    });
    let from_beginning = start(ctx, &raw.start);
    if ctx.errors.len() != before {
        return None;
    }
    Some(JournalWatch {
        units,
        unit_globs,
        matches,
        priority,
        pattern,
        directory,
        from_beginning,
    })
}

/// `units`: names and globs; a glob set when any is a glob.
fn units(ctx: &mut Ctx, raw: &RawJournalWatch) -> (Vec<String>, Option<globset::GlobSet>) {
    let mut units = Vec::new();
    let mut globs = globset::GlobSetBuilder::new();
    let mut any_glob = false;
    if let Some(list) = &raw.units {
        if list.get_ref().0.is_empty() {
            ctx.error(
                list.span(),
                "`units` is empty: name units, or leave it out for all",
            );
        }
        for (u, at) in NameList::spanned(list) {
            if u.is_empty() || u.contains(char::is_whitespace) {
                ctx.error(at, format!("{u:?} is not a unit name"));
                continue;
            }
            any_glob |= u.contains(['*', '?', '[']);
            match globset::Glob::new(u) {
                Ok(g) => {
                    globs.add(g);
                }
                Err(e) => ctx.error(at, format!("invalid glob: {}", e.kind())),
            }
            units.push(u.to_string());
        }
    }
    let unit_globs = if any_glob { globs.build().ok() } else { None };
    (units, unit_globs)
}

/// `priority`: 0 to 7, or its name.
fn priority(ctx: &mut Ctx, raw: &RawJournalWatch) -> Option<u8> {
    match &raw.priority {
        None => None,
        Some(p) => {
            let level = match p.get_ref() {
                RawPriority::Level(n) => u8::try_from(*n).ok().filter(|n| *n <= 7),
                RawPriority::Name(n) => PRIORITIES
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(n))
                    .map(|i| i as u8),
            };
            if level.is_none() {
                ctx.error(
                    p.span(),
                    format!("a priority is 0 to 7 or one of: {}", PRIORITIES.join(", ")),
                );
            }
            level
        }
    }
}

impl JournalWatch {
    /// journalctl's arguments for these filters: matches (`FIELD=value`, values of one
    /// field ORed, fields ANDed), the priority, the directory.
    pub fn journalctl_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(d) = &self.directory {
            args.push(format!("--directory={}", d.display()));
        }
        if let Some(p) = self.priority {
            args.push(format!("--priority=0..{p}"));
        }
        // Exact unit names are matched by journalctl; globs here, on what it sends.
        if self.unit_globs.is_none() {
            for u in &self.units {
                args.push(format!("_SYSTEMD_UNIT={u}"));
            }
        }
        for (field, values) in &self.matches {
            for v in values {
                args.push(format!("{field}={v}"));
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_field_names_are_capitals_digits_and_underscores() {
        assert!(field_name_ok("SYSLOG_IDENTIFIER"));
        assert!(field_name_ok("_TRANSPORT"));
        assert!(!field_name_ok("syslog_identifier"));
        assert!(!field_name_ok("1FIELD"));
        assert!(!field_name_ok("A=B"));
        assert!(!field_name_ok(""));
    }
}
