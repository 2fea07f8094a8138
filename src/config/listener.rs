//! `[daemon.http]`: where the HTTP listener is, its TLS (`tls_cert`, `tls_key`, and
//! `client_ca` to ask clients for a certificate), its `basic_auth_users` (bcrypt hashes,
//! as the Prometheus exporters' web configuration has them) and which paths answer
//! without credentials (`anonymous`). `[daemon] http = "ADDRESS"` is the short form.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::table::deserialize_table;
use super::Ctx;

/// The listener's settings besides its address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerConfig {
    pub tls: Option<ServerTls>,
    /// User name to bcrypt hash.
    pub basic_auth: BTreeMap<String, String>,
    /// What answers without a token or a user: `None` for the default (the page,
    /// `/api/status` and `/metrics` on a loopback address, nothing elsewhere).
    pub anonymous: Option<Vec<Open>>,
}

/// What may be open to anyone who reaches the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Open {
    /// `/metrics`.
    Metrics,
    /// `/` and `/api/status`.
    Page,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these.
    pub client_ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    listen: Spanned<String>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    basic_auth_users: Option<BTreeMap<String, Spanned<String>>>,
    anonymous: Option<Vec<Spanned<String>>>,
}

/// `http` of `[daemon]`: an address, or the table `[daemon.http]`.
pub(super) fn parse(
    ctx: &mut Ctx,
    value: &Spanned<DeValue<'_>>,
) -> Option<(SocketAddr, ListenerConfig)> {
    let raw = match value.get_ref() {
        DeValue::String(s) => {
            let addr = address(ctx, s, value.span())?;
            return Some((addr, ListenerConfig::default()));
        }
        DeValue::Table(t) => deserialize_table::<RawListener>(ctx, t.clone(), value.span())?,
        _ => {
            ctx.error(
                value.span(),
                "`http` is an address (\"127.0.0.1:9797\") or a table [daemon.http]",
            );
            return None;
        }
    };
    let addr = address(ctx, raw.listen.get_ref(), raw.listen.span());
    let base = ctx.config_dir();
    let path = |s: &Spanned<String>| super::file::normalize(&base.join(s.get_ref()));
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(c), Some(k)) => {
            let tls = ServerTls {
                cert: path(c),
                key: path(k),
                client_ca: raw.client_ca.as_ref().map(path),
            };
            if let Err(e) = tls.load() {
                ctx.error(c.span().start..k.span().end.max(c.span().end), e);
            }
            Some(tls)
        }
        (None, None) => {
            if let Some(ca) = &raw.client_ca {
                ctx.error(ca.span(), "`client_ca` needs `tls_cert` and `tls_key`");
            }
            None
        }
        (Some(one), None) | (None, Some(one)) => {
            ctx.error(
                one.span(),
                "`tls_cert` and `tls_key` go together: give both",
            );
            None
        }
    };
    let mut basic_auth = BTreeMap::new();
    for (user, hash) in raw.basic_auth_users.into_iter().flatten() {
        if let Err(e) = hash.get_ref().parse::<bcrypt::HashParts>() {
            ctx.error(
                hash.span(),
                format!(
                    "user `{user}`: not a bcrypt hash ({e}); make one with \
                     `htpasswd -nbBC 10 \"\" PASSWORD | tr -d ':\\n'`"
                ),
            );
            continue;
        }
        basic_auth.insert(user, hash.into_inner());
    }
    let anonymous = raw.anonymous.map(|list| {
        list.iter()
            .filter_map(|o| match o.get_ref().as_str() {
                "metrics" => Some(Open::Metrics),
                "page" => Some(Open::Page),
                other => {
                    let msg = format!(
                        "`anonymous` names \"metrics\" (/metrics) or \"page\" (/ and \
                         /api/status), not {other:?}"
                    );
                    ctx.error(o.span(), msg);
                    None
                }
            })
            .collect()
    });
    Some((
        addr?,
        ListenerConfig {
            tls,
            basic_auth,
            anonymous,
        },
    ))
}

fn address(ctx: &mut Ctx, text: &str, span: Range<usize>) -> Option<SocketAddr> {
    match text.parse() {
        Ok(a) => Some(a),
        Err(e) => {
            ctx.error(
                span,
                format!("invalid HTTP address {text:?}: {e} (write it like \"127.0.0.1:9797\")"),
            );
            None
        }
    }
}

impl ServerTls {
    /// The TLS server configuration its files make (read now); the error names the file.
    pub fn load(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
        crate::tls::server_config(self)
    }
}

impl ListenerConfig {
    /// Whether `what` answers without credentials on a listener at `addr`.
    pub fn is_open(&self, what: Open, addr: SocketAddr) -> bool {
        match &self.anonymous {
            Some(list) => list.contains(&what),
            None => addr.ip().is_loopback() && self.basic_auth.is_empty(),
        }
    }
}
