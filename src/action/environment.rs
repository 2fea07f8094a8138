//! What a shell action's process is given of the firing: `HARK_*` variables, each and all
//! together held below what the kernel takes (a variable of 128 KiB or an environment past
//! a quarter of the stack limit makes `execve` fail with E2BIG, and the action would never
//! start), and the whole event, uncut, as a file the action can read.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use serde_json::Value;

use super::template;
use crate::event::{decode_os, Firing};

/// Bytes one variable's value holds at most.
pub const VAR_MAX: usize = 32 * 1024;
/// Bytes all of them hold together at most.
pub const ENV_MAX: usize = 256 * 1024;
/// Bytes one argv element holds at most (the kernel's own limit is 128 KiB).
pub const ARG_MAX: usize = 64 * 1024;
/// What a variable cut to make room for others keeps.
const SQUEEZED: usize = 1024;

/// `HARK_RULE`, `HARK_WATCH`, `HARK_STATE`, `HARK_EVENT` (JSON), `HARK_LAST` (a burst's
/// last event, JSON), `HARK_KINDS` (its events' kinds, space-separated), `HARK_SUMMARY`,
/// `HARK_SEVERITY`, `HARK_FIRING_COUNT`, and `HARK_<FIELD>` for each top-level event field.
/// `HARK_COUNT` is the event's own `count` when it has one (a process watch's), else the
/// firing's count. Strings carry their original bytes; other values are written as JSON.
/// A NUL byte, which no environment variable can hold, is written as U+FFFD: one field
/// must not keep a rule's every action from starting.
pub fn hark_env(firing: &Firing, ctx: &template::RenderContext) -> Vec<(String, OsString)> {
    let fields = firing.event.to_json();
    let mut env: Vec<(String, OsString)> = Vec::new();
    for (k, v) in &fields {
        let key: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let value = match v {
            Value::String(s) => decode_os(s),
            other => OsString::from(other.to_string()),
        };
        env.push((format!("HARK_{key}"), without_nul(value)));
    }
    env.push(("HARK_RULE".into(), (&*firing.rule).into()));
    env.push(("HARK_WATCH".into(), (&*firing.event.watch).into()));
    env.push(("HARK_STATE".into(), firing.state.as_str().into()));
    env.push(("HARK_EVENT".into(), event_json(&fields).into()));
    if let Some(last) = &firing.last {
        env.push(("HARK_LAST".into(), event_json(&last.to_json()).into()));
    }
    env.push((
        "HARK_KINDS".into(),
        template::kinds(firing).join(" ").into(),
    ));
    env.push(("HARK_SEVERITY".into(), (&*firing.severity).into()));
    env.push(("HARK_FIRING_COUNT".into(), firing.count.to_string().into()));
    if !fields.contains_key("count") {
        env.push(("HARK_COUNT".into(), firing.count.to_string().into()));
    }
    let summary = ctx
        .json
        .get("summary")
        .and_then(Value::as_str)
        .unwrap_or("");
    env.push(("HARK_SUMMARY".into(), without_nul(decode_os(summary))));
    env
}

/// The event as JSON for `HARK_EVENT`: whole when it fits in a variable, else with each
/// long string cut (still valid JSON; the whole event is in `HARK_EVENT_FILE`).
fn event_json(fields: &serde_json::Map<String, Value>) -> String {
    let whole = crate::event::event_json_lossy(fields).to_string();
    if whole.len() <= VAR_MAX {
        return whole;
    }
    let mut each = VAR_MAX / (fields.len().max(1) * 2);
    loop {
        let cut: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.clone(), cut_strings(v, each)))
            .collect();
        let text = crate::event::event_json_lossy(&cut).to_string();
        if text.len() <= VAR_MAX || each <= 16 {
            return text;
        }
        each /= 2;
    }
}

fn cut_strings(v: &Value, max: usize) -> Value {
    match v {
        Value::String(s) if s.len() > max => {
            let keep = char_boundary(s.as_bytes(), max);
            Value::String(format!("{}{}", &s[..keep], marker(s.len() - keep)))
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| cut_strings(x, max)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), cut_strings(x, max)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// hark's own variables: never left out (the event's field variables may be).
const OWN: &[&str] = &[
    "HARK_RULE",
    "HARK_WATCH",
    "HARK_STATE",
    "HARK_EVENT",
    "HARK_LAST",
    "HARK_KINDS",
    "HARK_SEVERITY",
    "HARK_FIRING_COUNT",
    "HARK_COUNT",
    "HARK_SUMMARY",
];

/// Holds every variable to `VAR_MAX` and all of them to `ENV_MAX`, the largest cut first;
/// past that (thousands of fields), the event's field variables are left out, the last
/// first (the whole event is in `HARK_EVENT_FILE`). How many were cut or left out.
pub fn fit(env: &mut Vec<(String, OsString)>) -> usize {
    let mut cut = 0;
    for (_, v) in env.iter_mut() {
        if v.len() > VAR_MAX {
            *v = cut_to(v, VAR_MAX);
            cut += 1;
        }
    }
    let total = |env: &[(String, OsString)]| env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut size: usize = total(env);
    if size > ENV_MAX {
        let mut order: Vec<usize> = (0..env.len()).collect();
        order.sort_by_key(|i| std::cmp::Reverse(env[*i].1.len()));
        for i in order {
            if size <= ENV_MAX || env[i].1.len() <= SQUEEZED {
                break;
            }
            let before = env[i].1.len();
            env[i].1 = cut_to(&env[i].1, SQUEEZED);
            size = size - before + env[i].1.len();
            cut += 1;
        }
    }
    while size > ENV_MAX {
        let Some(i) = env
            .iter()
            .rposition(|(k, _)| k.starts_with("HARK_") && !OWN.contains(&k.as_str()))
        else {
            break;
        };
        let (k, v) = env.remove(i);
        size -= k.len() + v.len() + 2;
        cut += 1;
    }
    cut
}

/// `v` cut to about `max` bytes (at a character's start when it is UTF-8), with a marker
/// saying how much went.
pub fn cut_to(v: &OsString, max: usize) -> OsString {
    let bytes = v.as_bytes();
    if bytes.len() <= max {
        return v.clone();
    }
    let keep = char_boundary(bytes, max.saturating_sub(32));
    let mut out = bytes[..keep].to_vec();
    out.extend_from_slice(marker(bytes.len() - keep).as_bytes());
    OsString::from_vec(out)
}

fn marker(n: usize) -> String {
    format!("…[hark cut {n} bytes]")
}

/// The largest index ≤ `max` that does not split a UTF-8 character.
fn char_boundary(b: &[u8], max: usize) -> usize {
    let mut i = max.min(b.len());
    while i > 0 && i < b.len() && b[i] & 0xC0 == 0x80 {
        i -= 1;
    }
    i
}

/// `s` with each NUL byte (which an argv element or environment variable cannot hold)
/// replaced by U+FFFD.
pub fn without_nul(s: OsString) -> OsString {
    if !s.as_bytes().contains(&0) {
        return s;
    }
    let mut out = Vec::with_capacity(s.len() + 2);
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        } else {
            out.push(b);
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_megabyte_variable_is_cut_with_a_marker_and_all_fit_together() {
        let mut env: Vec<(String, OsString)> = (0..20)
            .map(|i| (format!("HARK_F{i}"), OsString::from("é".repeat(20_000))))
            .collect();
        env.push(("HARK_LINE".into(), OsString::from_vec(vec![0xff; 1 << 20])));
        env.push(("HARK_RULE".into(), "r".into()));
        let cut = fit(&mut env);
        assert!(cut >= 20, "{cut}");
        let total: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        assert!(total <= ENV_MAX, "{total}");
        assert!(env.iter().all(|(_, v)| v.len() <= VAR_MAX));
        let line = &env[20].1;
        assert!(String::from_utf8_lossy(line.as_bytes()).contains("…[hark cut "));
        assert_eq!(env[21].1, "r", "a short variable is left whole");
        // Cut where a character starts: the rest is still UTF-8.
        assert!(env[0].1.to_str().is_some());
    }

    #[test]
    fn thousands_of_fields_leave_their_variables_out_and_keep_harks_own() {
        let mut env: Vec<(String, OsString)> = (0..5000)
            .map(|i| (format!("HARK_F{i}"), OsString::from("x".repeat(500))))
            .collect();
        env.push(("HARK_RULE".into(), "r".into()));
        env.push(("MINE".into(), "configured".into()));
        fit(&mut env);
        let total: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        assert!(total <= ENV_MAX, "{total}");
        assert!(env.iter().any(|(k, v)| k == "HARK_RULE" && v == "r"));
        assert!(env.iter().any(|(k, v)| k == "MINE" && v == "configured"));
        assert!(
            env.iter().any(|(k, _)| k == "HARK_F0"),
            "the first fields stay"
        );
    }

    #[test]
    fn hark_event_stays_json_when_its_strings_are_cut() {
        let mut fields = serde_json::Map::new();
        fields.insert("line".into(), Value::from("\u{1}".repeat(200_000)));
        fields.insert("status".into(), Value::from(503));
        let text = event_json(&fields);
        assert!(text.len() <= VAR_MAX, "{}", text.len());
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["status"], 503);
        assert!(back["line"].as_str().unwrap().contains("hark cut"));
    }
}
