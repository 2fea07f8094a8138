//! `type = "log"`: lines appended to files, by glob; `pattern` keeps the lines it matches
//! (named groups become fields), `format = "json"` makes each line's object the fields.

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::file::{path_pattern, FileEvents, FileWatch};
use super::table::deserialize_table;
use super::values;
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
    let taken = super::fields::log_fields();
    let pattern = (raw.pattern.as_ref()).and_then(|p| values::field_pattern(ctx, p, &taken));
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
    let from_beginning = values::start(ctx, &raw.start);
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
    let ignore = super::file::ignore_set(ctx, &raw.ignore);
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
