//! Errors that point at a place in a config file: `FILE:LINE:COL: error: MESSAGE`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One config file's text, kept so that every error can name a line and column.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Where each line starts, found once (at the first error): a file with 20,000
    /// errors is not scanned from its start for each.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> SourceFile {
        SourceFile {
            path,
            text,
            line_starts: std::sync::OnceLock::new(),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let starts = self.line_starts();
        let line = starts.partition_point(|s| *s <= offset).max(1);
        let line_start = starts[line - 1];
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    fn line_text(&self, line: usize) -> &str {
        let starts = self.line_starts();
        let Some(&start) = starts.get(line.saturating_sub(1)) else {
            return "";
        };
        let end = starts.get(line).map_or(self.text.len(), |e| e - 1);
        self.text[start..end.max(start)].trim_end_matches('\r')
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A place in a config file: the file and a byte range in it.
#[derive(Debug, Clone)]
pub struct Location {
    pub file: Arc<SourceFile>,
    pub span: Range<usize>,
}

impl Location {
    pub fn new(file: &Arc<SourceFile>, span: Range<usize>) -> Self {
        Location {
            file: Arc::clone(file),
            span,
        }
    }

    /// `FILE:LINE:COL`
    pub fn display(&self) -> String {
        let (line, col) = self.file.line_col(self.span.start);
        format!("{}:{}:{}", self.file.path.display(), line, col)
    }
}

/// One configuration error, with the place it points at when there is one.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub path: PathBuf,
    pub location: Option<Location>,
    pub message: String,
}

impl ConfigError {
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        ConfigError {
            path: location.file.path.clone(),
            location: Some(location),
            message: message.into(),
        }
    }

    pub fn in_file(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            location: None,
            message: message.into(),
        }
    }

    /// The `FILE:LINE:COL: error: MESSAGE` line, without the snippet.
    pub fn headline(&self) -> String {
        let place = match &self.location {
            Some(loc) => loc.display(),
            // An error about a whole file (unreadable, unsafe permissions) points at its start.
            None => format!("{}:1:1", self.path.display()),
        };
        format!("{place}: error: {}", self.message)
    }
}

impl fmt::Display for ConfigError {
    /// The headline, then the offending line with a caret under the place. A long line
    /// is shown as a window around the place, so the caret's column is never far.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.headline())?;
        if let Some(loc) = &self.location {
            let (line, col) = loc.file.line_col(loc.span.start);
            let text = loc.file.line_text(line);
            let width = loc.file.text[loc.span.clone().start..]
                .get(..loc.span.len())
                .map_or(1, |s| s.lines().next().unwrap_or("").chars().count().max(1));
            let (shown, pad, room) = window(text, col - 1);
            let gutter = line.to_string().len();
            let blank = " ".repeat(gutter);
            write!(
                f,
                "\n{blank} |\n{line} | {shown}\n{blank} | {}{}",
                " ".repeat(pad),
                "^".repeat(width.min(room).max(1)),
            )?;
        }
        Ok(())
    }
}

/// Characters of a snippet shown around the place of an error.
const SNIPPET: usize = 120;

/// The part of `line` shown around the character at `col` (0-based): the text, how many
/// columns in it the place is, and how many characters from there to the shown end.
fn window(line: &str, col: usize) -> (String, usize, usize) {
    let total = line.chars().count();
    let col = col.min(total);
    let from = col.saturating_sub(SNIPPET / 2);
    let to = (from + SNIPPET).min(total);
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(from).take(to - from));
    if to < total {
        shown.push('…');
    }
    let pad = col - from + usize::from(from > 0);
    (shown, pad, to.saturating_sub(col))
}

impl std::error::Error for ConfigError {}

/// Every error found while loading, in the order of the files.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where an offset inside a TOML string value lands in the file, so that an error inside
/// a CEL expression or a template points at the very character. Escapes in basic strings
/// shift offsets; when the string holds any, the start of the value is the best we can say.
pub fn offset_in_string_value(file: &SourceFile, value_span: &Range<usize>, inner: usize) -> usize {
    let Some(raw) = file.text.get(value_span.clone()) else {
        return value_span.start;
    };
    let (open, escapes_matter) = if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else {
        return value_span.start;
    };
    let mut start = open;
    // A newline right after the opening delimiter of a multi-line string is trimmed.
    if open == 3 {
        if raw[start..].starts_with("\r\n") {
            start += 2;
        } else if raw[start..].starts_with('\n') {
            start += 1;
        }
    }
    if escapes_matter && raw.contains('\\') {
        return value_span.start;
    }
    let offset = value_span.start + start + inner;
    offset.min(value_span.end.saturating_sub(1).max(value_span.start))
}

/// Byte offset of a 1-based (line, column-in-chars) position inside `text`.
pub fn offset_of_line_col(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let within: usize = l
                .chars()
                .take(col.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return offset + within;
        }
        offset += l.len();
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile::new(PathBuf::from("x.toml"), text.to_string())
    }

    #[test]
    fn line_starts_agree_with_a_scan_from_the_start_everywhere() {
        let text = "a\r\nbé\n\nlast line without newline";
        let f = file(text);
        for offset in 0..=text.len() {
            if !text.is_char_boundary(offset) {
                continue;
            }
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let col = before[start..].chars().count() + 1;
            assert_eq!(f.line_col(offset), (line, col), "at {offset}");
        }
        assert_eq!(f.line_text(1), "a");
        assert_eq!(f.line_text(2), "bé");
        assert_eq!(f.line_text(3), "");
        assert_eq!(f.line_text(4), "last line without newline");
        assert_eq!(f.line_text(9), "");
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let f = file("a = 1\nbé = 2\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(f.line_col(9), (2, 3));
    }

    #[test]
    fn offset_inside_literal_string_maps_one_to_one() {
        let f = file("when = 'size > 1'\n");
        let span = 7..17;
        assert_eq!(offset_in_string_value(&f, &span, 5), 13);
        assert_eq!(f.line_col(13), (1, 14));
    }

    #[test]
    fn offset_inside_basic_string_with_escapes_falls_back_to_value_start() {
        let f = file("when = \"a\\tb\"\n");
        assert_eq!(offset_in_string_value(&f, &(7..13), 3), 7);
    }

    #[test]
    fn multi_line_string_skips_the_first_newline() {
        let f = file("when = '''\nab'''\n");
        assert_eq!(offset_in_string_value(&f, &(7..16), 1), 12);
    }

    #[test]
    fn an_error_far_along_a_long_line_shows_a_window_with_the_caret_under_it() {
        // Regression: a column past 65,535 overflowed the formatter's width and panicked.
        let long = "x".repeat(70_000);
        let text = format!("when = '{long}?'\n");
        let file = Arc::new(file(&text));
        let at = text.find('?').unwrap();
        let e = ConfigError::at(Location::new(&file, at..at + 1), "bad");
        let shown = e.to_string();
        assert!(shown.starts_with("x.toml:1:70009: error: bad"), "{shown}");
        let lines: Vec<&str> = shown.lines().collect();
        let caret = lines[3].find('^').unwrap();
        let under: String = lines[2]
            .chars()
            .skip(lines[3][..caret].chars().count())
            .take(1)
            .collect();
        assert_eq!(under, "?", "{shown}");
        assert!(lines[2].chars().count() < 200, "{shown}");
    }

    #[test]
    fn line_col_to_offset() {
        assert_eq!(offset_of_line_col("ab\ncd", 2, 2), 4);
        assert_eq!(offset_of_line_col("ab", 1, 1), 0);
    }
}
