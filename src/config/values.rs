//! Values checked after parsing: durations, name lists, CEL conditions, templates.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::{offset_in_string_value, offset_of_line_col, ConfigError, Location};
use super::Ctx;

/// A list of names that may also be written as one string: `then = "page"` or
/// `then = ["page", "restart"]`. Each name keeps its span when written in a list.
#[derive(Debug, Clone, Default)]
pub struct NameList(pub Vec<(String, Option<Range<usize>>)>);

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NameList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NameList, E> {
                Ok(NameList(vec![(v.to_string(), None)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NameList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    let span = s.span();
                    out.push((s.into_inner(), Some(span)));
                }
                Ok(NameList(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl NameList {
    /// Each name with the span to blame for it: its own, or the whole value's.
    pub fn spanned(list: &Spanned<NameList>) -> impl Iterator<Item = (&str, Range<usize>)> {
        let whole = list.span();
        list.get_ref()
            .0
            .iter()
            .map(move |(n, s)| (n.as_str(), s.clone().unwrap_or_else(|| whole.clone())))
    }
}

/// `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"0ms"`.
pub fn duration(ctx: &mut Ctx, value: &Spanned<String>) -> Option<Duration> {
    match humantime::parse_duration(value.get_ref().trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            ctx.error(
                value.span(),
                format!(
                    "invalid duration {:?}: {e} (write it like \"250ms\", \"10s\", \"5m\", \"1h\")",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

/// A duration that must be longer than zero (an interval, a timeout); `default` when it
/// is not given or not valid (its error is reported).
pub fn positive_duration(
    ctx: &mut Ctx,
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
) -> Duration {
    let Some(v) = value else { return default };
    match duration(ctx, v) {
        Some(d) if d.is_zero() => {
            ctx.error(v.span(), format!("`{key}` must be longer than zero"));
            default
        }
        Some(d) => d,
        None => default,
    }
}

pub fn optional_duration(ctx: &mut Ctx, value: &Option<Spanned<String>>) -> Option<Duration> {
    value.as_ref().and_then(|v| duration(ctx, v))
}

/// Names of watches, rules and actions: what a user types on the command line and
/// what appears in logs and metrics labels, so kept plain.
/// Letters, digits and `_`, not starting with a digit: environment variable and label
/// names.
pub fn is_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn check_name(ctx: &mut Ctx, kind: &str, name: &str, span: Range<usize>) -> bool {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !ok {
        ctx.error(
            span,
            format!(
                "invalid {kind} name {name:?}: use letters, digits, '_', '-' and '.' (at most 128)"
            ),
        );
    }
    ok
}

/// Compiles a template to find its errors now rather than when the rule fires.
pub fn template(ctx: &mut Ctx, env: &minijinja::Environment<'static>, value: &Spanned<String>) {
    if let Err(e) = env.template_from_str(value.get_ref()) {
        let inner = e
            .range()
            .map(|r| r.start)
            .or_else(|| e.line().map(|l| offset_of_line_col(value.get_ref(), l, 1)))
            .unwrap_or(0);
        let detail = e
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.kind().to_string());
        ctx.error_inside_string(value.span(), inner, format!("invalid template: {detail}"));
    }
}

impl Ctx {
    pub fn error_inside_string(&mut self, value_span: Range<usize>, inner: usize, msg: String) {
        let at = offset_in_string_value(&self.file, &value_span, inner);
        self.errors
            .push(ConfigError::at(Location::new(&self.file, at..at + 1), msg));
    }
}

/// `"64KiB"`, `"1MiB"`, `"1000"` (bytes).
pub fn size(ctx: &mut Ctx, value: &Spanned<String>) -> Option<u64> {
    match value.get_ref().trim().parse::<bytesize::ByteSize>() {
        Ok(b) => Some(b.as_u64()),
        Err(_) => {
            ctx.error(
                value.span(),
                format!(
                    "invalid size {:?}: write it like \"64KiB\", \"1MiB\" or a number of bytes",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

pub(crate) fn check_env_name(ctx: &mut Ctx, k: &Spanned<String>) {
    let key = k.get_ref();
    if !is_identifier(key) {
        ctx.error(
            k.span(),
            format!("invalid environment variable name {key:?}"),
        );
    } else if key.starts_with("HARK_") {
        ctx.error(
            k.span(),
            format!("`{key}`: names starting with HARK_ are set by hark itself"),
        );
    }
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

/// A `pattern` whose named groups become event fields. A group named as a field the
/// watch's events carry anyway (`taken`: `host`, `line`, ...) would be hidden by that
/// field, in conditions and in `group_by` alike, so it is refused where it is named.
pub(crate) fn field_pattern(
    ctx: &mut Ctx,
    value: &Spanned<String>,
    taken: &[&str],
) -> Option<Arc<regex::Regex>> {
    let re = regex(ctx, value)?;
    let mut hidden = false;
    for name in re.capture_names().flatten() {
        if taken.contains(&name) {
            hidden = true;
            let at = value
                .get_ref()
                .find(&format!("<{name}>"))
                .map_or(0, |i| i + 1);
            ctx.error_inside_string(
                value.span(),
                at,
                format!(
                    "the group `{name}` has the name of a field every event of this watch \
                     carries, which would hide what it captures; name it otherwise (as \
                     `(?P<src_{name}>...)`)"
                ),
            );
        }
    }
    (!hidden).then_some(re)
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
