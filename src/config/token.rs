//! `[token.NAME]`: a bearer token for the HTTP listener, with what it may do (`scopes`:
//! `read`, `push`, `write`) and how many requests a second it may make. The token itself
//! is a secret reference (`${credential:NAME}`, `${file:…}`, `${env:…}`); its name is
//! what the log and `hark status` show of who asked.

use std::ops::Range;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::secret::{self, Secret};
use super::table::deserialize_table;
use super::Ctx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub name: String,
    pub secret: Secret,
    pub scopes: Scopes,
    /// Requests a second (and the burst allowed).
    pub rate_limit: u32,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    /// The API's reads: rules, explain, the outbox, status.
    pub read: bool,
    /// A push to any push watch.
    pub push: bool,
    /// Silences, outbox retries and drops.
    pub write: bool,
}

/// The requests a second a token or push watch may make when it does not say.
pub const DEFAULT_RATE_LIMIT: u32 = 100;
/// The shortest a token may be: a guess must not be cheap.
const MIN_TOKEN: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    secret: Spanned<String>,
    scopes: Spanned<Vec<Spanned<String>>>,
    rate_limit: Option<Spanned<i64>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    name: &str,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<TokenConfig> {
    let raw: RawToken = deserialize_table(ctx, table, span)?;
    let secret = checked_secret(ctx, &raw.secret);
    let mut scopes = Scopes::default();
    if raw.scopes.get_ref().is_empty() {
        ctx.error(
            raw.scopes.span(),
            "`scopes` is empty: give one or more of \"read\", \"push\", \"write\"",
        );
    }
    for s in raw.scopes.get_ref() {
        match s.get_ref().as_str() {
            "read" => scopes.read = true,
            "push" => scopes.push = true,
            "write" => scopes.write = true,
            other => ctx.error(
                s.span(),
                format!("unknown scope {other:?}: \"read\", \"push\" or \"write\""),
            ),
        }
    }
    let rate_limit = rate_limit(ctx, &raw.rate_limit);
    Some(TokenConfig {
        name: name.to_string(),
        secret: secret?,
        scopes,
        rate_limit: rate_limit?,
    })
}

/// A token's secret, resolved; refused when short or not plain text.
pub(crate) fn checked_secret(ctx: &mut Ctx, value: &Spanned<String>) -> Option<Secret> {
    let secret = secret::resolve(ctx, value)?;
    let v = secret.expose();
    if v.len() < MIN_TOKEN || !v.bytes().all(|b| b.is_ascii_graphic()) {
        ctx.error(
            value.span(),
            format!(
                "a token is at least {MIN_TOKEN} printable characters with no space (as \
                 `openssl rand -hex 32` makes)"
            ),
        );
        return None;
    }
    Some(secret)
}

/// `rate_limit`: requests a second, at least 1.
pub(crate) fn rate_limit(ctx: &mut Ctx, value: &Option<Spanned<i64>>) -> Option<u32> {
    let Some(v) = value else {
        return Some(DEFAULT_RATE_LIMIT);
    };
    match u32::try_from(*v.get_ref()) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            ctx.error(
                v.span(),
                "`rate_limit` is requests a second, a whole number of at least 1",
            );
            None
        }
    }
}
