//! A config table into its typed struct, every mistake of it said in one run: a key of
//! the wrong type or an unknown key is reported, taken out, and the rest read again, so
//! a table with several mistakes is not fixed one run at a time. Messages say what to
//! write (`a whole number`), not serde's names for it (`i64`).

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::suggest::{suggest, SUGGEST_BUDGET};
use super::Ctx;

/// `table` as a `T`: each key it cannot take is an error at that key, and the others are
/// still read. `None` only when something it needs is missing (or nothing is left).
pub(crate) fn deserialize_table<T: for<'de> Deserialize<'de>>(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<T> {
    deserialize_table_also(ctx, table, span, &[])
}

/// [`deserialize_table`] for a table whose caller took out keys of its own (`headers`),
/// named with the accepted keys when one is unknown.
pub(crate) fn deserialize_table_also<T: for<'de> Deserialize<'de>>(
    ctx: &mut Ctx,
    mut table: DeTable<'_>,
    span: Range<usize>,
    also: &[&str],
) -> Option<T> {
    ctx.taken_out.clear();
    // Each round takes out one key; a table has no more keys than that.
    for _ in 0..=table.len() {
        let value = Spanned::new(span.clone(), DeValue::Table(table.clone()));
        let e = match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let at = e.span().unwrap_or(span.clone());
        ctx.error(at.clone(), plain(first_line(e.message()), also));
        // The key the error is about: its name's or its value's place.
        let culprit = table
            .iter()
            .find(|(k, v)| contains(&k.span(), &at) || contains(&v.span(), &at))
            .map(|(k, _)| k.get_ref().to_string());
        match culprit {
            Some(k) => {
                table.remove(k.as_str());
                ctx.taken_out.push(k);
            }
            // A missing key, or an error about the table as a whole.
            None => return None,
        }
    }
    None
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

pub(crate) fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("")
}

/// serde's message in the words of someone writing TOML.
fn plain(message: &str, also: &[&str]) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once("`, expected ") {
            let mut keys: Vec<String> = expected
                .trim_start_matches("one of ")
                .split(", ")
                .map(|k| k.trim_matches('`').to_string())
                .filter(|k| !k.is_empty())
                .chain(also.iter().map(|k| k.to_string()))
                .collect();
            keys.sort();
            keys.dedup();
            let mut budget = SUGGEST_BUDGET;
            let hint = suggest(name, keys.iter(), &mut budget);
            let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            return format!(
                "unknown key `{name}`{hint}; the keys here are {}",
                list.join(", ")
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((got, want)) = rest.split_once(", expected ") {
            return format!("expected {}, not {}", wanted(want), got);
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((got, want)) = rest.split_once(", expected ") {
            return format!("expected {}, not {}", wanted(want), got);
        }
    }
    message.to_string()
}

/// What serde expected, as a person would write it.
fn wanted(serde_name: &str) -> String {
    match serde_name {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "a whole number, like 3".into()
        }
        "f32" | "f64" => "a number, like 2.5".into(),
        "a boolean" => "true or false".into(),
        "a string" => "a string in quotes, like \"10s\"".into(),
        "a sequence" => "a list, like [\"a\", \"b\"]".into(),
        "a map" => "a table, like { key = \"value\" }".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn serde_words_become_what_to_write() {
        assert_eq!(
            plain("invalid type: string \"3\", expected i64", &[]),
            "expected a whole number, like 3, not string \"3\""
        );
        assert_eq!(
            plain("invalid type: string \"true\", expected a sequence", &[]),
            "expected a list, like [\"a\", \"b\"], not string \"true\""
        );
        let m = plain(
            "unknown field `evry`, expected one of `url`, `every`, `timeout`",
            &["headers"],
        );
        assert_eq!(
            m,
            "unknown key `evry` (did you mean `every`?); the keys here are `every`, `headers`, `timeout`, `url`"
        );
    }
}
