//! `type = "certificate"`: certificate files (PEM bundles or DER, globs allowed), read
//! when they change and every `every`; or the chain a TLS endpoint presents, directly or
//! after STARTTLS (SMTP, IMAP, POP3, XMPP, PostgreSQL).

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::file::{path_pattern, FileEvents, FileWatch, Ignore, PathPattern};
use super::table::deserialize_table;
use super::values;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct CertificateWatch {
    pub source: CertificateSource,
    pub every: Duration,
}

#[derive(Debug, Clone)]
pub enum CertificateSource {
    Files {
        paths: Vec<PathPattern>,
        /// The private key the (one) file's first certificate must match.
        key: Option<PathBuf>,
    },
    Endpoint {
        /// `host:port`.
        address: String,
        starttls: Starttls,
        /// SNI, and the domain an XMPP stream is opened to: the address's host unless set.
        server_name: String,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starttls {
    /// TLS from the first byte.
    None,
    Smtp,
    Imap,
    Pop3,
    Xmpp,
    Postgres,
}

const STARTTLS: &[(&str, Starttls)] = &[
    ("none", Starttls::None),
    ("smtp", Starttls::Smtp),
    ("imap", Starttls::Imap),
    ("pop3", Starttls::Pop3),
    ("xmpp", Starttls::Xmpp),
    ("postgres", Starttls::Postgres),
];

impl Starttls {
    pub fn name(self) -> &'static str {
        STARTTLS
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("none", |(n, _)| n)
    }
}

impl CertificateWatch {
    /// The file watch that tells when the files change (its events are the certificate
    /// watch's, not a rule's).
    pub fn file_watch(&self) -> Option<FileWatch> {
        let CertificateSource::Files { paths, .. } = &self.source else {
            return None;
        };
        Some(FileWatch {
            paths: paths.clone(),
            recursive: false,
            events: FileEvents::ALL,
            debounce: Duration::from_millis(200),
            ignore: Ignore {
                full: globset::GlobSet::empty(),
                name: globset::GlobSet::empty(),
            },
            checksum: false,
        })
    }
}

pub const DEFAULT_CERTIFICATE_EVERY: Duration = Duration::from_secs(3600);
pub const DEFAULT_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    paths: Option<Spanned<Vec<Spanned<String>>>>,
    key: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    starttls: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
) -> Option<CertificateWatch> {
    let raw: RawCertificate = deserialize_table(ctx, table, span.clone())?;
    let before = ctx.errors.len();
    let every = values::positive_duration(ctx, &raw.every, "every", DEFAULT_CERTIFICATE_EVERY);
    let source = match (&raw.paths, &raw.address) {
        (Some(paths), None) => files(ctx, &raw, paths),
        (None, Some(address)) => endpoint(ctx, &raw, address),
        _ => {
            ctx.error(
                span,
                "a certificate watch needs `paths` (certificate files) or `address` (a TLS endpoint), not both",
            );
            None
        }
    };
    if ctx.errors.len() != before {
        return None;
    }
    Some(CertificateWatch {
        source: source?,
        every,
    })
}

fn files(
    ctx: &mut Ctx,
    raw: &RawCertificate,
    paths: &Spanned<Vec<Spanned<String>>>,
) -> Option<CertificateSource> {
    for (key, v) in [
        ("starttls", &raw.starttls),
        ("server_name", &raw.server_name),
        ("timeout", &raw.timeout),
    ] {
        if let Some(v) = v {
            ctx.error(
                v.span(),
                format!("`{key}` is for an `address`, not for `paths`"),
            );
        }
    }
    if paths.get_ref().is_empty() {
        ctx.error(
            paths.span(),
            "`paths` is empty: name at least one file or glob",
        );
    }
    let dir = ctx.config_dir();
    let patterns: Vec<PathPattern> = paths
        .get_ref()
        .iter()
        .filter_map(|p| path_pattern(ctx, &dir, p))
        .collect();
    let key = raw.key.as_ref().map(|k| {
        if patterns.len() != 1 || patterns.iter().any(|p| p.glob.is_some()) {
            ctx.error(
                k.span(),
                "`key` belongs to one certificate: name one file in `paths`, without a glob",
            );
        }
        super::file::normalize(&dir.join(k.get_ref()))
    });
    Some(CertificateSource::Files {
        paths: patterns,
        key,
    })
}

fn endpoint(
    ctx: &mut Ctx,
    raw: &RawCertificate,
    address: &Spanned<String>,
) -> Option<CertificateSource> {
    if let Some(k) = &raw.key {
        ctx.error(
            k.span(),
            "`key` is for `paths`: an endpoint's key is not ours to read",
        );
    }
    let text = address.get_ref().trim().to_string();
    let host = text
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0))
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string());
    let starttls = match &raw.starttls {
        None => Starttls::None,
        Some(s) => match STARTTLS.iter().find(|(n, _)| n == s.get_ref()) {
            Some((_, t)) => *t,
            None => {
                ctx.error(
                    s.span(),
                    format!(
                        "unknown `starttls` {:?} (expected one of: none, smtp, imap, pop3, xmpp, postgres)",
                        s.get_ref()
                    ),
                );
                Starttls::None
            }
        },
    };
    let Some(host) = host else {
        ctx.error(
            address.span(),
            format!("invalid address {text:?}: write it as \"host:port\" (\"mail.example.org:25\", \"[::1]:993\")"),
        );
        return None;
    };
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_ENDPOINT_TIMEOUT);
    Some(CertificateSource::Endpoint {
        address: text,
        starttls,
        server_name: raw
            .server_name
            .as_ref()
            .map_or(host, |s| s.get_ref().clone()),
        timeout,
    })
}
