//! Lines out of a log file's bytes, and the fields of the event each one becomes.

use crate::config::LogWatch;
use crate::event::{Map, Value};

/// Splits what was read into complete lines; the rest waits for its newline. A line
/// longer than `max` is cut there (the rest of it skipped) and flagged.
#[derive(Debug, Default)]
pub struct Splitter {
    partial: Vec<u8>,
    /// The line being read is already longer than `max`: its rest is skipped.
    cut: bool,
    /// Bytes of the waiting line skipped past `max`.
    skipped: usize,
}

/// One complete line: its bytes (at most `max`), whether it was cut, and how many bytes
/// of the file it took, its newline included.
pub struct Line<'a> {
    pub bytes: &'a [u8],
    pub truncated: bool,
    pub consumed: u64,
}

impl Splitter {
    /// Feeds `chunk`; calls `each` for every line it completes. Returns how many bytes
    /// of the line still waiting are held (they are read again after a restart).
    pub fn feed(&mut self, chunk: &[u8], max: usize, mut each: impl FnMut(Line<'_>)) -> u64 {
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let piece = &rest[..nl];
            let consumed = (self.held() + piece.len() + 1) as u64;
            self.take(piece, max);
            let body = strip_cr(&self.partial);
            each(Line {
                bytes: body,
                truncated: self.cut,
                consumed,
            });
            self.partial.clear();
            self.cut = false;
            self.skipped = 0;
            rest = &rest[nl + 1..];
        }
        self.take(rest, max);
        self.held() as u64
    }

    /// Bytes of the waiting line seen so far (kept and skipped).
    fn held(&self) -> usize {
        self.partial.len() + self.skipped
    }

    fn take(&mut self, piece: &[u8], max: usize) {
        let room = max.saturating_sub(self.partial.len());
        if piece.len() > room {
            self.partial.extend_from_slice(&piece[..room]);
            self.skipped += piece.len() - room;
            self.cut = true;
        } else {
            self.partial.extend_from_slice(piece);
        }
    }

    /// Forgets the waiting line (the file was truncated under it).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.cut = false;
        self.skipped = 0;
    }
}

fn strip_cr(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// The fields of a line's event, or `None` when the watch's pattern does not match it.
/// `locs` is where the pattern's groups are found (made once, used for every line).
pub fn fields(
    config: &LogWatch,
    locs: &mut Option<regex::CaptureLocations>,
    line: &Line<'_>,
) -> Option<Map<String, Value>> {
    let text = match std::str::from_utf8(line.bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(line.bytes),
    };
    let mut fields = Map::new();
    if let Some(re) = &config.pattern {
        let locs = locs.get_or_insert_with(|| re.capture_locations());
        re.captures_read(locs, &text)?;
        for (i, name) in re.capture_names().enumerate() {
            if let (Some(name), Some((a, b))) = (name, locs.get(i)) {
                fields.insert(name.to_string(), Value::from(&text[a..b]));
            }
        }
    }
    if config.json {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) => {
                for (k, v) in o {
                    fields.entry(k).or_insert(v);
                }
            }
            Ok(_) => {
                fields.insert("json_error".into(), Value::from("not a JSON object"));
            }
            Err(e) => {
                fields.insert("json_error".into(), Value::from(e.to_string()));
            }
        }
    }
    fields.insert("line".into(), Value::from(text.into_owned()));
    fields.insert("truncated".into(), Value::from(line.truncated));
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &mut Splitter, chunk: &[u8], max: usize) -> (Vec<(String, bool, u64)>, u64) {
        let mut out = Vec::new();
        let held = s.feed(chunk, max, |l| {
            out.push((
                String::from_utf8_lossy(l.bytes).into_owned(),
                l.truncated,
                l.consumed,
            ))
        });
        (out, held)
    }

    #[test]
    fn lines_split_across_reads_come_out_whole_with_what_they_took() {
        let mut s = Splitter::default();
        let (a, held) = lines(&mut s, b"one\ntw", 100);
        assert_eq!(a, [("one".into(), false, 4)]);
        assert_eq!(held, 2);
        let (b, held) = lines(&mut s, b"o\r\nthree", 100);
        assert_eq!(b, [("two".into(), false, 5)]);
        assert_eq!(held, 5);
    }

    #[test]
    fn a_long_line_is_cut_flagged_and_counted_whole() {
        let mut s = Splitter::default();
        let (a, held) = lines(&mut s, b"abcdefgh", 3);
        assert!(a.is_empty());
        assert_eq!(held, 8);
        let (b, _) = lines(&mut s, b"ij\nk\n", 3);
        assert_eq!(b, [("abc".into(), true, 11), ("k".into(), false, 2)]);
    }
}
