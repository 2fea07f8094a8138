//! `type = "ping"`: ICMP echo to one host, `count` probes a round, a round every `every`.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::values;
use super::Ctx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingWatch {
    /// An IP address, or a host name resolved when the watch starts.
    pub host: String,
    pub count: u32,
    /// Between the probes of a round.
    pub interval: Duration,
    /// How long a round waits for the last probe's reply.
    pub timeout: Duration,
    pub every: Duration,
}

pub const DEFAULT_PING_EVERY: Duration = Duration::from_secs(30);
pub const DEFAULT_PING_COUNT: u32 = 3;
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(200);
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes a round, at most: a round is one event, not a flood.
const MAX_COUNT: i64 = 100;
/// The shortest gap between probes (as ping(8) allows a user: 200 ms is its floor, 10 ms
/// is a flood for root).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPing {
    host: Spanned<String>,
    count: Option<Spanned<i64>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<PingWatch> {
    let raw: RawPing = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    let host = raw.host.get_ref().trim().to_string();
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !host_ok {
        ctx.error(
            raw.host.span(),
            format!("invalid host {host:?}: write an IP address or a host name (\"192.0.2.1\", \"::1\", \"gateway.lan\"), without a port"),
        );
    }
    let count = match &raw.count {
        None => DEFAULT_PING_COUNT,
        Some(c) => match u32::try_from(*c.get_ref()) {
            Ok(n) if (1..=MAX_COUNT).contains(c.get_ref()) => n,
            _ => {
                ctx.error(
                    c.span(),
                    format!("`count` is probes a round, 1 to {MAX_COUNT}"),
                );
                DEFAULT_PING_COUNT
            }
        },
    };
    let interval = values::positive_duration(ctx, &raw.interval, "interval", DEFAULT_PING_INTERVAL);
    if let Some(i) = &raw.interval {
        if interval < MIN_INTERVAL {
            ctx.error(i.span(), "`interval` is at least 10ms");
        }
    }
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_PING_TIMEOUT);
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_PING_EVERY);
    let round = interval * count.saturating_sub(1) + timeout;
    if round >= every {
        if let Some(e) = raw.every.as_ref().or(raw.timeout.as_ref()) {
            ctx.error(
                e.span(),
                format!(
                    "a round ({count} probes {} apart, then {} for the last reply) takes {}: \
                     `every` must be longer",
                    humantime::format_duration(interval),
                    humantime::format_duration(timeout),
                    humantime::format_duration(round)
                ),
            );
        }
    }
    if ctx.errors.len() != before {
        return None;
    }
    Some(PingWatch {
        host,
        count,
        interval,
        timeout,
        every,
    })
}
