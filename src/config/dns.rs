//! `type = "dns"`: a name's records of one type, asked of named servers or of the
//! system's resolver (the `nameserver` lines of /etc/resolv.conf, read at each check).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::table::deserialize_table;
use super::values;
use super::Ctx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsWatch {
    /// The name asked for, fully qualified.
    pub name: Name,
    pub record: RecordType,
    /// Asked in order until one answers; empty: the system's resolver.
    pub servers: Vec<SocketAddr>,
    pub every: Duration,
    /// For each server asked (UDP, then TCP when the answer was truncated).
    pub timeout: Duration,
}

pub const DEFAULT_DNS_EVERY: Duration = Duration::from_secs(30);
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// The record types a dns watch asks for.
pub const RECORD_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::PTR,
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    name: Spanned<String>,
    record: Option<Spanned<String>>,
    servers: Option<Vec<Spanned<String>>>,
    every: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

pub(crate) fn parse(ctx: &mut Ctx, table: DeTable<'_>, span: Range<usize>) -> Option<DnsWatch> {
    let raw: RawDns = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    let name = parse_name(ctx, &raw.name);
    let record = match &raw.record {
        None => RecordType::A,
        Some(r) => {
            let upper = r.get_ref().trim().to_ascii_uppercase();
            match RECORD_TYPES.iter().find(|t| t.to_string() == upper) {
                Some(t) => *t,
                None => {
                    let names: Vec<String> = RECORD_TYPES.iter().map(|t| t.to_string()).collect();
                    ctx.error(
                        r.span(),
                        format!(
                            "unknown record type {:?} (expected one of: {})",
                            r.get_ref(),
                            names.join(", ")
                        ),
                    );
                    RecordType::A
                }
            }
        }
    };
    let servers = raw
        .servers
        .iter()
        .flatten()
        .filter_map(|s| parse_server(ctx, s))
        .collect();
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_DNS_EVERY);
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_DNS_TIMEOUT);
    if ctx.errors.len() != before {
        return None;
    }
    Some(DnsWatch {
        name: name?,
        record,
        servers,
        every,
        timeout,
    })
}

fn parse_name(ctx: &mut Ctx, value: &Spanned<String>) -> Option<Name> {
    let text = value.get_ref().trim();
    let parsed = if text.is_empty() {
        Err("it is empty".to_string())
    } else {
        Name::from_utf8(text).map_err(|e| e.to_string())
    };
    match parsed {
        Ok(mut n) => {
            n.set_fqdn(true);
            Some(n)
        }
        Err(e) => {
            ctx.error(
                value.span(),
                format!("invalid name {text:?}: {e} (write a domain name: \"example.org\")"),
            );
            None
        }
    }
}

/// `"192.0.2.53"`, `"192.0.2.53:5353"`, `"::1"`, `"[::1]:5353"`: an address, not a host
/// name (which would need a resolver to find the resolver).
fn parse_server(ctx: &mut Ctx, value: &Spanned<String>) -> Option<SocketAddr> {
    let text = value.get_ref().trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        if a.port() != 0 {
            return Some(a);
        }
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    ctx.error(
        value.span(),
        format!(
            "invalid server {text:?}: write an IP address, with a port if not 53 \
             (\"192.0.2.53\", \"127.0.0.1:5353\", \"[::1]:5353\")"
        ),
    );
    None
}
