//! journalctl's `--output=export` (the Journal Export Format): an entry is its fields, one
//! after another, and ends at an empty line. A field is `NAME=value\n` when its value is
//! printable text on one line, otherwise `NAME\n`, its length as a little-endian 64-bit
//! integer, its bytes and `\n`. A field may come several times in one entry.
//!
//! Read into one buffer per entry, reused for the next: no allocation per field, and no
//! JSON to write (journalctl) or parse (here). journalctl writes this format with about a
//! quarter of the work of its JSON (docs/benchmarks.md).

use std::io::{self, BufRead, Read};
use std::ops::Range;

/// One entry: its fields' bytes in one buffer.
#[derive(Default)]
pub struct Entry {
    buf: Vec<u8>,
    fields: Vec<(Range<usize>, Range<usize>)>,
}

impl Entry {
    fn clear(&mut self) {
        self.buf.clear();
        self.fields.clear();
    }

    /// The value of field `name`; of a field given several times, the first.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Every field (name, value), in the order journalctl wrote them.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|(n, v)| (&self.buf[n.clone()], &self.buf[v.clone()]))
    }
}

/// What [`read_entry`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An entry, in the [`Entry`] given.
    Entry,
    /// An entry longer than the limit, skipped (its fields' bytes were read past).
    TooLong,
    /// The output ended (an entry cut off by the end is not one).
    End,
}

/// Reads the next entry into `entry`, which holds at most `max` bytes of fields.
/// An error is output that is not the export format (or cannot be read): the reader is
/// then out of step with its entries.
pub fn read_entry<R: BufRead>(r: &mut R, entry: &mut Entry, max: usize) -> io::Result<Outcome> {
    entry.clear();
    let mut too_long = false;
    loop {
        let start = entry.buf.len();
        let room = max.saturating_sub(start) as u64;
        let n = r.take(room + 1).read_until(b'\n', &mut entry.buf)?;
        let ended = entry.buf.last() == Some(&b'\n');
        if n == 0 || (!ended && (n as u64) <= room) {
            return Ok(Outcome::End);
        }
        if !ended {
            // A text field longer than the room left: read past it.
            entry.buf.truncate(start);
            too_long = true;
            if !skip_line(r)? {
                return Ok(Outcome::End);
            }
            continue;
        }
        let end = entry.buf.len() - 1;
        if end == start {
            entry.buf.truncate(start);
            if too_long {
                return Ok(Outcome::TooLong);
            }
            if entry.fields.is_empty() {
                continue;
            }
            return Ok(Outcome::Entry);
        }
        if let Some(eq) = memchr::memchr(b'=', &entry.buf[start..end]) {
            entry.fields.push((start..start + eq, start + eq + 1..end));
            continue;
        }
        // A binary field: its name, then its length and bytes.
        let mut size = [0u8; 8];
        if !fill(r, &mut size)? {
            return Ok(Outcome::End);
        }
        let size = u64::from_le_bytes(size);
        entry.buf.truncate(end);
        let at = entry.buf.len();
        if size > max.saturating_sub(at) as u64 {
            entry.buf.truncate(start);
            too_long = true;
            if io::copy(&mut r.take(size), &mut io::sink())? < size {
                return Ok(Outcome::End);
            }
        } else {
            // Bounded by `max` just above.
            entry.buf.resize(at + size as usize, 0);
            if !fill(r, &mut entry.buf[at..])? {
                return Ok(Outcome::End);
            }
            entry.fields.push((start..end, at..entry.buf.len()));
        }
        let mut newline = [0u8; 1];
        if !fill(r, &mut newline)? {
            return Ok(Outcome::End);
        }
        if newline[0] != b'\n' {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "journalctl's export output: a binary field not followed by a newline",
            ));
        }
    }
}

/// Fills `buf`; false when the output ends first.
fn fill<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads past the rest of a line, without keeping it; false when the output ends first.
fn skip_line<R: BufRead>(r: &mut R) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        match memchr::memchr(b'\n', buf) {
            Some(i) => {
                r.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binary(name: &str, value: &[u8]) -> Vec<u8> {
        let mut out = format!("{name}\n").into_bytes();
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
        out
    }

    /// An entry's fields, owned.
    type Owned = Vec<(Vec<u8>, Vec<u8>)>;

    fn all(input: &[u8], max: usize) -> Vec<Result<Owned, Outcome>> {
        let mut r = io::BufReader::with_capacity(7, input);
        let mut e = Entry::default();
        let mut out = Vec::new();
        loop {
            match read_entry(&mut r, &mut e, max).map_err(|e| e.to_string()) {
                Ok(Outcome::Entry) => out.push(Ok(e
                    .fields()
                    .map(|(n, v)| (n.to_vec(), v.to_vec()))
                    .collect())),
                Ok(Outcome::End) => return out,
                Ok(other) => out.push(Err(other)),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn text_binary_and_repeated_fields_and_the_first_of_a_repeated_one() {
        let mut input = b"__CURSOR=s=1\nMESSAGE=disk sda failed\n".to_vec();
        input.extend(binary("NOTE", b"two\nlines \xff"));
        input.extend_from_slice(b"TAG=a\nTAG=b\nEMPTY=\n\n__CURSOR=s=2\nMESSAGE=x=y\n\n");
        let got = all(&input, 1 << 20);
        assert_eq!(got.len(), 2);
        let mut r = io::BufReader::new(&input[..]);
        let mut e = Entry::default();
        assert_eq!(
            read_entry(&mut r, &mut e, 1 << 20).ok(),
            Some(Outcome::Entry)
        );
        assert_eq!(e.get("MESSAGE"), Some(&b"disk sda failed"[..]));
        assert_eq!(e.get("NOTE"), Some(&b"two\nlines \xff"[..]));
        assert_eq!(e.get("TAG"), Some(&b"a"[..]));
        assert_eq!(e.get("EMPTY"), Some(&b""[..]));
        assert_eq!(e.get("NONE"), None);
        assert_eq!(e.fields().count(), 6);
        assert_eq!(
            read_entry(&mut r, &mut e, 1 << 20).ok(),
            Some(Outcome::Entry)
        );
        assert_eq!(e.get("MESSAGE"), Some(&b"x=y"[..]));
        assert_eq!(e.fields().count(), 2);
        assert_eq!(read_entry(&mut r, &mut e, 1 << 20).ok(), Some(Outcome::End));
    }

    #[test]
    fn an_entry_over_the_limit_is_skipped_and_the_next_one_read() {
        let big = "x".repeat(100);
        let mut input = format!("__CURSOR=1\nMESSAGE={big}\n\n").into_bytes();
        input.extend_from_slice(b"__CURSOR=2\n");
        input.extend(binary("BLOB", big.as_bytes()));
        input.extend_from_slice(b"\n__CURSOR=3\nMESSAGE=ok\n\n");
        let got = all(&input, 64);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], Err(Outcome::TooLong));
        assert_eq!(got[1], Err(Outcome::TooLong));
        let third = got[2].as_ref().map(|f| f.len());
        assert_eq!(third, Ok(2));
    }

    #[test]
    fn an_entry_cut_off_by_the_end_is_not_one() {
        for input in [
            &b"__CURSOR=1\nMESSAGE=hal"[..],
            b"__CURSOR=1\nMESSAGE=whole\n",
            b"__CURSOR=1\nBLOB\n\x05\x00",
            b"__CURSOR=1\nBLOB\n\x05\x00\x00\x00\x00\x00\x00\x00ab",
        ] {
            assert!(all(input, 1 << 20).is_empty(), "{input:?}");
        }
        let mut r = io::BufReader::new(&b"BLOB\n\x01\x00\x00\x00\x00\x00\x00\x00ab\n\n"[..]);
        assert!(read_entry(&mut r, &mut Entry::default(), 1 << 20).is_err());
    }

    proptest! {
        /// Any values, text or binary (newlines, `=`, bytes that are not UTF-8, empty),
        /// read back as written, in any cut of the reads.
        #[test]
        fn fields_are_read_back_as_written(
            entries in prop::collection::vec(
                prop::collection::vec(("[A-Z_]{1,8}", prop::collection::vec(any::<u8>(), 0..40)), 1..6),
                1..5,
            ),
        ) {
            let mut input = Vec::new();
            for fields in &entries {
                for (name, value) in fields {
                    let text = !value.contains(&b'\n');
                    if text {
                        input.extend_from_slice(name.as_bytes());
                        input.push(b'=');
                        input.extend_from_slice(value);
                        input.push(b'\n');
                    } else {
                        input.extend(binary(name, value));
                    }
                }
                input.push(b'\n');
            }
            let got = all(&input, 1 << 20);
            let want: Vec<_> = entries
                .iter()
                .map(|f| Ok(f.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.clone())).collect()))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
