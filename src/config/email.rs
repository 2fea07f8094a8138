//! `type = "email"`: a message per firing to an SMTP server, through the outbox.

use std::ops::Range;
use std::time::Duration;

use lettre::message::Mailbox;
use reqwest::Url;
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::secret::{self, Secret};
use super::table::deserialize_table;
use super::tls::{self, TlsOptions};
use super::values;
use super::webhook::retry;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct EmailAction {
    pub server: SmtpServer,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// Templates.
    pub subject: String,
    pub body: String,
    pub tls: TlsOptions,
    /// For one attempt: connecting and the server's answer to the message included.
    pub timeout: Duration,
    /// Attempts at most; `None`: until accepted.
    pub retry: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: no TLS (a local relay).
    Plain,
    /// `smtp+starttls://`: STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

pub const DEFAULT_EMAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// The subject when none is given.
pub const DEFAULT_SUBJECT: &str = "[hark] {{ rule }} {{ state }} on {{ host }}: {{ summary }}";

/// The body when none is given: the firing, in plain text.
pub const DEFAULT_BODY: &str = "\
Rule:    {{ rule }}
State:   {{ state }}
Host:    {{ host }}
Watch:   {{ watch }}
Time:    {{ time }}
{% if severity %}Severity: {{ severity }}
{% endif %}{% if duration %}Firing for: {{ duration }}
{% endif %}
{{ summary }}

Event:
{% for k, v in event|items %}  {{ k }}: {{ v }}
{% endfor %}
-- 
hark on {{ host }}
";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp: Spanned<String>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    from: Spanned<String>,
    to: Spanned<Vec<Spanned<String>>>,
    subject: Option<Spanned<String>>,
    body: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    tls_verify: Option<bool>,
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<i64>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<EmailAction> {
    let raw: RawEmail = deserialize_table(ctx, table, span)?;
    let before = ctx.errors.len();
    let server = secret::resolve(ctx, &raw.smtp).and_then(|s| server(ctx, &raw.smtp, s.expose()));
    let username = raw.username.as_ref().and_then(|u| secret::resolve(ctx, u));
    let password = raw.password.as_ref().and_then(|p| secret::resolve(ctx, p));
    if raw.username.is_some() != raw.password.is_some() {
        let s = raw
            .username
            .as_ref()
            .or(raw.password.as_ref())
            .map(Spanned::span)
            .unwrap_or_default();
        ctx.error(s, "`username` and `password` go together");
    }
    if let (Some(s), Some(_)) = (&server, &raw.username) {
        if s.security == Security::Plain {
            ctx.error(
                raw.smtp.span(),
                "a password is not sent over plain smtp://: use smtp+starttls:// or smtps://",
            );
        }
    }
    let from = mailbox(ctx, &raw.from, "from");
    if raw.to.get_ref().is_empty() {
        ctx.error(raw.to.span(), "`to` must name at least one address");
    }
    let to: Vec<Mailbox> = raw
        .to
        .get_ref()
        .iter()
        .filter_map(|t| mailbox(ctx, t, "to"))
        .collect();
    let subject = template_or(ctx, templates, &raw.subject, DEFAULT_SUBJECT);
    let body = template_or(ctx, templates, &raw.body, DEFAULT_BODY);
    let tls = tls::parse(ctx, &raw.ca, raw.tls_verify);
    if let (Some(s), Some(ca)) = (&server, &raw.ca) {
        if s.security == Security::Plain {
            ctx.error(ca.span(), "`ca` has no use with plain smtp://");
        }
    }
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_EMAIL_TIMEOUT);
    let retry = retry(ctx, &raw.retry);
    if ctx.errors.len() != before {
        return None;
    }
    Some(EmailAction {
        server: server?,
        username,
        password,
        from: from?,
        to,
        subject,
        body,
        tls,
        timeout,
        retry,
    })
}

fn template_or(
    ctx: &mut Ctx,
    templates: &minijinja::Environment<'static>,
    given: &Option<Spanned<String>>,
    default: &str,
) -> String {
    match given {
        Some(t) => {
            values::template(ctx, templates, t);
            t.get_ref().clone()
        }
        None => default.to_string(),
    }
}

fn mailbox(ctx: &mut Ctx, value: &Spanned<String>, key: &str) -> Option<Mailbox> {
    match value.get_ref().trim().parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(e) => {
            ctx.error(
                value.span(),
                format!(
                    "`{key}`: {:?} is not a mail address ({e}); e.g. \"hark@example.org\" or \"hark <hark@example.org>\"",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

/// The server of `smtp`. Messages name neither the value nor the parse error: it may
/// hold a secret reference's value.
fn server(ctx: &mut Ctx, written: &Spanned<String>, url: &str) -> Option<SmtpServer> {
    let example =
        "smtp+starttls://mail.example.org:587, smtps://mail.example.org or smtp://127.0.0.1:25";
    let Ok(u) = Url::parse(url.trim()) else {
        ctx.error(
            written.span(),
            format!("`smtp` must be a URL like {example}"),
        );
        return None;
    };
    let (security, port) = match u.scheme() {
        "smtp" => (Security::Plain, 25),
        "smtp+starttls" => (Security::StartTls, 587),
        "smtps" => (Security::Implicit, 465),
        _ => {
            ctx.error(
                written.span(),
                format!("`smtp` must be a URL like {example}"),
            );
            return None;
        }
    };
    let Some(host) = u.host_str().filter(|h| !h.is_empty()) else {
        ctx.error(written.span(), "`smtp` names no host");
        return None;
    };
    if !u.username().is_empty() || u.password().is_some() {
        ctx.error(
            written.span(),
            "`smtp`: give the credentials as `username` and `password`, not in the URL",
        );
        return None;
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() {
        ctx.error(
            written.span(),
            "`smtp` is a server only: scheme, host and port",
        );
        return None;
    }
    Some(SmtpServer {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: u.port().unwrap_or(port),
        security,
    })
}
