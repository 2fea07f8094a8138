//! `type = "http"`: a periodic HTTP health check.

use std::ops::Range;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table_also;
use super::values;
use super::Ctx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpWatch {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<String>,
    pub every: Duration,
    /// One deadline for the whole check: connect, TLS, headers and body.
    pub timeout: Duration,
    /// How many redirects to follow; 0 reports the redirect itself.
    pub follow_redirects: u32,
    pub tls_verify: bool,
    /// The most of the body that is read; the rest is not downloaded.
    pub max_body: u64,
}

pub const DEFAULT_EVERY: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_BODY: u64 = 64 * 1024;
/// What `follow_redirects = true` means: as many as a browser tolerates before calling it
/// a loop.
pub const MAX_REDIRECTS: u32 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpWatch {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    body: Option<String>,
    every: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    follow_redirects: Option<Spanned<Redirects>>,
    tls_verify: Option<bool>,
    max_body: Option<Spanned<String>>,
}

/// `follow_redirects = true | false | N`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Redirects {
    Flag(bool),
    Count(i64),
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<HttpWatch> {
    // `headers` is a TOML table; walk it as pairs so each name and value keeps its span.
    let mut table = table;
    let headers_table = table.remove_entry("headers").map(|(_, v)| v);
    let raw: RawHttpWatch = deserialize_table_also(ctx, table, span, &["headers"])?;
    let before = ctx.errors.len();
    let url = parse_url(ctx, &raw.url);
    let method = match &raw.method {
        None => Method::GET,
        Some(m) => match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                ctx.error(m.span(), format!("invalid HTTP method {:?}", m.get_ref()));
                Method::GET
            }
        },
    };
    let headers = match headers_table {
        None => Vec::new(),
        Some(t) => parse_headers(ctx, t),
    };
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_EVERY);
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_TIMEOUT);
    let follow_redirects = match raw.follow_redirects.as_ref() {
        None => 0,
        Some(r) => match r.get_ref() {
            Redirects::Flag(true) => MAX_REDIRECTS,
            Redirects::Flag(false) => 0,
            Redirects::Count(n) => match u32::try_from(*n) {
                Ok(n) if n <= 100 => n,
                _ => {
                    ctx.error(
                        r.span(),
                        "follow_redirects must be true, false or a count from 0 to 100",
                    );
                    0
                }
            },
        },
    };
    let max_body = match &raw.max_body {
        None => DEFAULT_MAX_BODY,
        Some(s) => values::size(ctx, s).unwrap_or(DEFAULT_MAX_BODY),
    };
    if ctx.errors.len() != before {
        return None;
    }
    Some(HttpWatch {
        url: url?,
        method,
        headers,
        body: raw.body,
        every,
        timeout,
        follow_redirects,
        tls_verify: raw.tls_verify.unwrap_or(true),
        max_body,
    })
}

fn parse_url(ctx: &mut Ctx, raw: &Spanned<String>) -> Option<Url> {
    match Url::parse(raw.get_ref().trim()) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            ctx.error(
                raw.span(),
                format!("unsupported URL scheme `{}`: use http or https", u.scheme()),
            );
            None
        }
        Ok(u) if u.host().is_none() => {
            ctx.error(raw.span(), "the URL has no host");
            None
        }
        Ok(u) => Some(u),
        Err(e) => {
            ctx.error(raw.span(), format!("invalid URL {:?}: {e}", raw.get_ref()));
            None
        }
    }
}

fn parse_headers(
    ctx: &mut Ctx,
    value: Spanned<toml::de::DeValue<'_>>,
) -> Vec<(HeaderName, HeaderValue)> {
    let toml::de::DeValue::Table(t) = value.get_ref() else {
        ctx.error(value.span(), "`headers` must be a table of strings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in t.iter() {
        let toml::de::DeValue::String(s) = v.get_ref() else {
            ctx.error(
                v.span(),
                format!("header `{}` must be a string", k.get_ref()),
            );
            continue;
        };
        let name = match HeaderName::from_bytes(k.get_ref().as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                ctx.error(k.span(), format!("invalid header name {:?}", k.get_ref()));
                continue;
            }
        };
        match HeaderValue::from_str(s) {
            Ok(mut hv) => {
                // Header values often carry credentials; keep them out of debug output.
                hv.set_sensitive(true);
                out.push((name, hv));
            }
            Err(_) => ctx.error(
                v.span(),
                format!(
                    "invalid value for header `{}`: it must not contain control characters or newlines",
                    k.get_ref()
                ),
            ),
        }
    }
    out
}
