//! `type = "log"`: lines appended to files, by glob; `pattern` keeps the lines it matches
//! (named groups become fields), `format = "json"` makes each line's object the fields.

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::values;
use super::watch::{path_pattern, FileEvents, FileWatch};
use super::Ctx;

/// A log watch.
#[derive(Debug, Clone)]
pub struct LogWatch {
    /// The files, followed as a file watch follows them (created later, renamed, deleted).
    pub files: FileWatch,
    /// Only lines it matches become events; its named groups become fields.
    pub pattern: Option<Arc<regex::Regex>>,
    pub json: bool,
    /// Files present when the watch first starts are read from their end (the default)
    /// or their beginning; files that appear later always from their beginning.
    pub from_beginning: bool,
    /// Longer lines are cut to this many bytes and flagged `truncated`.
    pub max_line: usize,
}

pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// The longest `max_line` accepted: a line is held in memory whole until its end.
const MAX_MAX_LINE: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogWatch {
    paths: Spanned<Vec<Spanned<String>>>,
    pattern: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    max_line: Option<Spanned<String>>,
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<LogWatch> {
    let raw: RawLogWatch = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    if raw.paths.get_ref().is_empty() {
        ctx.error(
            raw.paths.span(),
            "`paths` is empty: name at least one file or glob",
        );
    }
    let config_dir = ctx.config_dir();
    let paths: Vec<_> = raw
        .paths
        .get_ref()
        .iter()
        .filter_map(|p| path_pattern(ctx, &config_dir, p))
        .collect();
    let pattern = raw.pattern.as_ref().and_then(|p| regex(ctx, p));
    let json = match &raw.format {
        None => false,
        Some(f) if f.get_ref() == "json" => true,
        Some(f) if f.get_ref() == "text" => false,
        Some(f) => {
            ctx.error(
                f.span(),
                format!(
                    "unknown format {:?} (\"json\", or leave it out for text)",
                    f.get_ref()
                ),
            );
            false
        }
    };
    let from_beginning = start(ctx, &raw.start);
    let max_line = match &raw.max_line {
        None => DEFAULT_MAX_LINE,
        Some(m) => match values::size(ctx, m) {
            Some(n) if (1..=MAX_MAX_LINE).contains(&n) => n as usize,
            Some(_) => {
                ctx.error(
                    m.span(),
                    format!(
                        "`max_line` must be from 1 byte to {} MiB",
                        MAX_MAX_LINE >> 20
                    ),
                );
                DEFAULT_MAX_LINE
            }
            None => DEFAULT_MAX_LINE,
        },
    };
    let ignore = super::watch::ignore_set(ctx, &raw.ignore);
    if ctx.errors.len() != before {
        return None;
    }
    Some(LogWatch {
        files: FileWatch {
            paths,
            recursive: false,
            events: FileEvents::ALL,
            debounce: std::time::Duration::ZERO,
            ignore,
            checksum: false,
        },
        pattern,
        json,
        from_beginning,
        max_line,
    })
}

/// `start`: `"end"` (the default) or `"beginning"`; whether it is the beginning.
pub(crate) fn start(ctx: &mut Ctx, value: &Option<Spanned<String>>) -> bool {
    match value {
        None => false,
        Some(s) if s.get_ref() == "end" => false,
        Some(s) if s.get_ref() == "beginning" => true,
        Some(s) => {
            ctx.error(
                s.span(),
                format!(
                    "unknown start {:?} (\"end\", the default, or \"beginning\")",
                    s.get_ref()
                ),
            );
            false
        }
    }
}

/// A regex, its error pointing inside the string.
pub(crate) fn regex(ctx: &mut Ctx, value: &Spanned<String>) -> Option<Arc<regex::Regex>> {
    match regex::RegexBuilder::new(value.get_ref())
        .size_limit(10 << 20)
        .build()
    {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            let (inner, message) = regex_error(value.get_ref(), &e);
            ctx.error_inside_string(value.span(), inner, format!("invalid regex: {message}"));
            None
        }
    }
}

/// Where in the pattern a regex error is, and what it says in one line.
fn regex_error(pattern: &str, e: &regex::Error) -> (usize, String) {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    // regex-syntax draws a caret line under the pattern: its first `^` is the column.
    let at = text
        .lines()
        .find(|l| l.trim_start().starts_with('^'))
        .and_then(|l| l.find('^'))
        .map(|col| col.saturating_sub(4).min(pattern.len()))
        .unwrap_or(0);
    (at, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regex_error_points_at_its_column_in_one_line() {
        let pattern = String::from("abc(def");
        let e = regex::Regex::new(&pattern).unwrap_err();
        let (at, msg) = regex_error("abc(def", &e);
        assert_eq!(at, 3, "{e}");
        assert!(msg.contains("unclosed group"), "{msg}");
    }
}
