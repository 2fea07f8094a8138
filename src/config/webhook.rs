//! `type = "webhook"`: an HTTP request per firing, delivered through the outbox.

use std::ops::Range;
use std::time::Duration;

use reqwest::header::HeaderName;
use reqwest::{Method, Url};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::secret::{self, Secret};
use super::table::deserialize_table_also;
use super::tls::{self, TlsOptions};
use super::values;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct WebhookAction {
    /// May hold secret references; checked to be an http(s) URL once resolved.
    pub url: Secret,
    pub method: Method,
    pub headers: Vec<(HeaderName, Secret)>,
    /// For one attempt, body included.
    pub timeout: Duration,
    /// Attempts at most; `None`: until delivered.
    pub retry: Option<u32>,
    pub payload: Payload,
    /// For https:// URLs: `ca` and `tls_verify`.
    pub tls: TlsOptions,
}

#[derive(Debug, Clone)]
pub enum Payload {
    /// A JSON document of the firing, shaped like Alertmanager's webhook.
    Default,
    /// A JSON value whose strings are templates.
    Json(serde_json::Value),
    /// A template sent as text.
    Body {
        template: String,
        content_type: String,
    },
}

pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<i64>>,
    json: Option<Spanned<serde_json::Value>>,
    body: Option<Spanned<String>>,
    content_type: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    tls_verify: Option<bool>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    mut table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<WebhookAction> {
    let headers_value = table.remove_entry("headers").map(|(_, v)| v);
    let raw: RawWebhook = deserialize_table_also(ctx, table, span, &["headers"])?;
    let before = ctx.errors.len();
    let url = secret::resolve(ctx, &raw.url);
    if let Some(u) = &url {
        match Url::parse(u.expose().trim()) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            // The message names neither the value nor the parse error: both could hold a
            // secret.
            _ => ctx.error(raw.url.span(), "`url` must be an http:// or https:// URL"),
        }
    }
    let method = match &raw.method {
        None => Method::POST,
        Some(m) => {
            Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()).unwrap_or_else(|_| {
                ctx.error(m.span(), format!("invalid HTTP method {:?}", m.get_ref()));
                Method::POST
            })
        }
    };
    let headers = headers_value.map(|h| headers(ctx, h)).unwrap_or_default();
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_WEBHOOK_TIMEOUT);
    let retry = retry(ctx, &raw.retry);
    let payload = payload(ctx, templates, &raw.json, &raw.body, &raw.content_type);
    let tls = tls::parse(ctx, &raw.ca, raw.tls_verify);
    if ctx.errors.len() != before {
        return None;
    }
    Some(WebhookAction {
        url: url?,
        method,
        headers,
        timeout,
        retry,
        payload,
        tls,
    })
}

pub(super) fn headers(ctx: &mut Ctx, value: Spanned<DeValue<'_>>) -> Vec<(HeaderName, Secret)> {
    let DeValue::Table(t) = value.get_ref() else {
        ctx.error(value.span(), "`headers` must be a table of strings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in t.iter() {
        let DeValue::String(s) = v.get_ref() else {
            ctx.error(
                v.span(),
                format!("header `{}` must be a string", k.get_ref()),
            );
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(k.get_ref().as_bytes()) else {
            ctx.error(k.span(), format!("invalid header name {:?}", k.get_ref()));
            continue;
        };
        let written = Spanned::new(v.span(), s.to_string());
        let Some(secret) = secret::resolve(ctx, &written) else {
            continue;
        };
        if reqwest::header::HeaderValue::from_str(secret.expose()).is_err() {
            ctx.error(
                v.span(),
                format!(
                    "the value of header `{}` has control characters or newlines",
                    k.get_ref()
                ),
            );
            continue;
        }
        out.push((name, secret));
    }
    out
}

/// `json`, `body` and `content_type`: what a webhook sends, or a broker message carries.
pub(super) fn payload(
    ctx: &mut Ctx,
    templates: &minijinja::Environment<'static>,
    json: &Option<Spanned<serde_json::Value>>,
    body: &Option<Spanned<String>>,
    content_type: &Option<Spanned<String>>,
) -> Payload {
    if let Some(ct) = content_type {
        // A header value: a CR or LF in it would fail every attempt, forever.
        if reqwest::header::HeaderValue::from_str(ct.get_ref()).is_err() {
            ctx.error(
                ct.span(),
                "`content_type` must be a header value: no control characters (CR, LF, ...)",
            );
        }
    }
    match (json, body) {
        (Some(_), Some(b)) => {
            ctx.error(b.span(), "give either `json` or `body`, not both");
            Payload::Default
        }
        (Some(j), None) => {
            check_json_templates(ctx, templates, j.span(), j.get_ref());
            Payload::Json(j.get_ref().clone())
        }
        (None, Some(b)) => {
            values::template(ctx, templates, b);
            Payload::Body {
                template: b.get_ref().clone(),
                content_type: content_type
                    .as_ref()
                    .map(|c| c.get_ref().clone())
                    .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
            }
        }
        (None, None) => Payload::Default,
    }
}

/// `retry`: the most attempts of one delivery; absent, until delivered.
pub(super) fn retry(ctx: &mut Ctx, raw: &Option<Spanned<i64>>) -> Option<u32> {
    let r = raw.as_ref()?;
    match u32::try_from(*r.get_ref()) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            ctx.error(
                r.span(),
                "`retry` is the most attempts, from 1 up (leave it out to retry until delivered)",
            );
            None
        }
    }
}

fn check_json_templates(
    ctx: &mut Ctx,
    templates: &minijinja::Environment<'static>,
    span: Range<usize>,
    v: &serde_json::Value,
) {
    match v {
        serde_json::Value::String(s) => {
            if let Err(e) = templates.template_from_str(s) {
                ctx.error(
                    span,
                    format!(
                        "invalid template {s:?} in `json`: {}",
                        e.detail().unwrap_or("syntax error")
                    ),
                );
            }
        }
        serde_json::Value::Array(a) => a
            .iter()
            .for_each(|x| check_json_templates(ctx, templates, span.clone(), x)),
        serde_json::Value::Object(o) => o
            .values()
            .for_each(|x| check_json_templates(ctx, templates, span.clone(), x)),
        _ => {}
    }
}
