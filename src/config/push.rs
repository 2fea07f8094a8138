//! `type = "push"`: events sent over HTTP to `/push/NAME` (and `/start`, `/fail`,
//! `/EXIT-CODE` after it) by a job on another machine, with the watch's `token`.

use std::ops::Range;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::secret::Secret;
use super::table::deserialize_table;
use super::{token, values, Ctx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushWatch {
    pub token: Secret,
    /// The longest body taken; a longer one is refused (413).
    pub max_body: usize,
    /// Requests a second with this watch's own token.
    pub rate_limit: u32,
}

pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
const MAX_MAX_BODY: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPush {
    token: Spanned<String>,
    max_body: Option<Spanned<String>>,
    rate_limit: Option<Spanned<i64>>,
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<PushWatch> {
    let raw: RawPush = deserialize_table(ctx, table, span)?;
    let token = token::checked_secret(ctx, &raw.token);
    let max_body = match &raw.max_body {
        None => Some(DEFAULT_MAX_BODY),
        Some(m) => match values::size(ctx, m)? {
            n if n > MAX_MAX_BODY => {
                ctx.error(m.span(), "`max_body` is at most 16MiB");
                None
            }
            n => usize::try_from(n).ok(),
        },
    };
    let rate_limit = token::rate_limit(ctx, &raw.rate_limit);
    Some(PushWatch {
        token: token?,
        max_body: max_body?,
        rate_limit: rate_limit?,
    })
}
