//! Text from the outside world kept byte for byte (file names that are not UTF-8), and
//! shown to people: lossy for logs and JSON, durations and times in words.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

/// `2026-11-26T12:00:00.123Z`
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

// Paths and names from the outside world are bytes, not always UTF-8. Each byte that is
// not part of valid UTF-8 is carried in a string as one character of Unicode's private use
// plane 16 (U+10FF80 to U+10FFFF), so CEL and templates can work on the text and an argv
// element or environment variable gets the original bytes back. Those characters are valid
// in a real name too: one that holds them has each of their UTF-8 bytes escaped the same
// way, so decoding gives back exactly the name's bytes, never another file's.
const ESCAPE_BASE: u32 = 0x10FF00;
const ESCAPES: std::ops::RangeInclusive<u32> = ESCAPE_BASE + 0x80..=ESCAPE_BASE + 0xFF;

/// A name from the outside world as a string that keeps every byte.
pub fn encode_os(s: &OsStr) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let escape = |out: &mut String, b: u8| {
        out.push(char::from_u32(ESCAPE_BASE + u32::from(b)).unwrap_or('\u{FFFD}'));
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if ESCAPES.contains(&u32::from(c)) {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    escape(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            escape(&mut out, b);
        }
    }
    out
}

/// The bytes that `encode_os` stood for, after a template or CEL has worked on the text.
pub fn decode_os(s: &str) -> OsString {
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let v = u32::from(c);
        if ESCAPES.contains(&v) {
            out.push((v - ESCAPE_BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    OsString::from_vec(out)
}

/// For logs and JSON: escaped bytes shown as U+FFFD.
pub fn display_lossy(s: &str) -> String {
    decode_os(s).to_string_lossy().into_owned()
}

/// The event as JSON for people and programs: escaped bytes shown as U+FFFD.
pub fn event_json_lossy(fields: &Map<String, Value>) -> Value {
    lossy_within(fields, usize::MAX)
}

/// How deep an event's values are shown to the client tools (`status`, `tail`,
/// `explain`): JSON readers refuse documents nested past a limit (serde_json's is 128), and
/// a monitored endpoint's body must not blind them.
pub const SHOWN_DEPTH: usize = 32;

/// [`event_json_lossy`] for the client tools: values nested deeper than `SHOWN_DEPTH`
/// are shown as a string that says so.
pub fn event_json_shown(fields: &Map<String, Value>) -> Value {
    lossy_within(fields, SHOWN_DEPTH)
}

fn lossy_within(fields: &Map<String, Value>, depth: usize) -> Value {
    fn lossy(v: &Value, depth: usize) -> Value {
        match v {
            Value::String(s) => Value::from(display_lossy(s)),
            Value::Array(_) | Value::Object(_) if depth == 0 => {
                Value::from(format!("[nested deeper than {SHOWN_DEPTH} levels]"))
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| lossy(x, depth - 1)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), lossy(v, depth - 1)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), lossy(v, depth)))
            .collect(),
    )
}

/// A duration for people: whole seconds from one second up (`4m 12s`), else milliseconds.
pub fn human_duration(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    humantime::format_duration(rounded).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invalid_utf8_survives_a_round_trip() {
        let raw = OsStr::from_bytes(b"caf\xe9 \xff$(x)");
        let enc = encode_os(raw);
        assert!(enc.starts_with("caf"));
        assert_eq!(decode_os(&enc), raw);
    }

    #[test]
    fn a_real_name_holding_an_escape_character_is_not_another_files_bytes() {
        // Regression: U+10FFAF in a valid name decoded to the single byte 0xAF, the name
        // of a different file.
        let real = OsStr::new("decoy-\u{10FFAF}.txt");
        let other = OsStr::from_bytes(b"decoy-\xaf.txt");
        assert_eq!(decode_os(&encode_os(real)), real);
        assert_eq!(decode_os(&encode_os(other)), other);
        assert_ne!(encode_os(real), encode_os(other));
    }

    proptest! {
        #[test]
        fn names_with_private_use_characters_round_trip(s in "[a\u{10FF70}-\u{10FFFF}\u{FFFD}/]{0,16}") {
            let raw = OsStr::new(&s);
            prop_assert_eq!(decode_os(&encode_os(raw)), raw.to_os_string());
        }

        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let raw = OsStr::from_bytes(&bytes);
            prop_assert_eq!(decode_os(&encode_os(raw)), raw.to_os_string());
        }

        #[test]
        fn valid_utf8_is_unchanged(s in "\\PC*") {
            prop_assert_eq!(encode_os(OsStr::new(&s)), s);
        }
    }
}
