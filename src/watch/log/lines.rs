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
    /// The same bytes as text, when already known to be UTF-8.
    pub text: Option<&'a str>,
    pub truncated: bool,
    pub consumed: u64,
}

impl Splitter {
    /// Feeds `chunk`; calls `each` for every line it completes. Returns how many bytes
    /// of the line still waiting are held (they are read again after a restart).
    pub fn feed(&mut self, chunk: &[u8], max: usize, mut each: impl FnMut(Line<'_>)) -> u64 {
        // The complete lines of the chunk checked as UTF-8 at once (a newline never falls
        // inside a character, so each of them is then valid too).
        let whole = memchr::memrchr(b'\n', chunk).map_or(0, |nl| nl + 1);
        let valid = std::str::from_utf8(&chunk[..whole]).ok();
        let mut from = 0;
        while let Some(nl) = memchr::memchr(b'\n', &chunk[from..]) {
            let (start, end) = (from, from + nl);
            from = end + 1;
            let piece = &chunk[start..end];
            let consumed = (self.held() + piece.len() + 1) as u64;
            if self.held() == 0 {
                // The whole line is in this chunk: it is handed over where it lies.
                let bytes = strip_cr(&piece[..piece.len().min(max)]);
                let end = start + bytes.len();
                each(Line {
                    bytes,
                    text: valid.and_then(|v| v.get(start..end)),
                    truncated: piece.len() > max,
                    consumed,
                });
                continue;
            }
            self.take(piece, max);
            let body = strip_cr(&self.partial);
            each(Line {
                bytes: body,
                text: None,
                truncated: self.cut,
                consumed,
            });
            self.partial.clear();
            self.cut = false;
            self.skipped = 0;
        }
        self.take(&chunk[from..], max);
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
    let text = match line
        .text
        .map(Ok)
        .unwrap_or_else(|| std::str::from_utf8(line.bytes))
    {
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
    use proptest::strategy::Just;

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

    proptest::proptest! {
        /// However the bytes are cut into reads, the lines (cut at `max`, one `\r`
        /// stripped) and what each took are those of the whole text split at once.
        #[test]
        fn any_cut_into_reads_gives_the_lines_of_the_whole(
            text in proptest::collection::vec(
                proptest::prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), proptest::num::u8::ANY],
                0..300,
            ),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            max in 1usize..40,
        ) {
            let mut want = Vec::new();
            let mut rest = &text[..];
            while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                let line = &rest[..nl];
                let kept = &line[..line.len().min(max)];
                want.push((strip_cr(kept).to_vec(), line.len() > max, (nl + 1) as u64));
                rest = &rest[nl + 1..];
            }
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= text.len()).collect();
            cuts.push(0);
            cuts.push(text.len());
            cuts.sort_unstable();
            let mut s = Splitter::default();
            let mut got = Vec::new();
            let mut held = 0;
            for w in cuts.windows(2) {
                held = s.feed(&text[w[0]..w[1]], max, |l| {
                    if let Some(t) = l.text {
                        assert_eq!(t.as_bytes(), l.bytes);
                    }
                    got.push((l.bytes.to_vec(), l.truncated, l.consumed))
                });
            }
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(held, rest.len() as u64);
        }
    }
}
