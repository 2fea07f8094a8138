//! `type = "alertmanager"`: firing and resolving alerts posted to Alertmanager's
//! `/api/v2/alerts`, through the outbox, and re-posted while they fire.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use reqwest::header::HeaderName;
use reqwest::Url;
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::secret::{self, Secret};
use super::table::deserialize_table_also;
use super::tls::{self, TlsOptions};
use super::values;
use super::webhook::{headers, retry, DEFAULT_WEBHOOK_TIMEOUT};
use super::Ctx;

#[derive(Debug, Clone)]
pub struct AlertmanagerAction {
    /// The `/api/v2/alerts` endpoint of each Alertmanager; every one gets every alert.
    pub endpoints: Vec<Secret>,
    pub headers: Vec<(HeaderName, Secret)>,
    /// For one attempt.
    pub timeout: Duration,
    /// Attempts at most per delivery; `None`: until delivered.
    pub retry: Option<u32>,
    /// How often a firing alert is posted again. Each post says the alert ends after four
    /// of these unless posted again, so an alert from a host that went silent resolves by
    /// itself, as Prometheus's do.
    pub resend: Duration,
    /// Annotations besides `summary`; values are templates.
    pub annotations: BTreeMap<String, String>,
    /// A template; by default `hark://HOST/RULE`.
    pub generator_url: Option<String>,
    /// For https:// URLs: `ca` and `tls_verify`.
    pub tls: TlsOptions,
}

impl AlertmanagerAction {
    /// How long after each post a firing alert ends unless posted again.
    pub fn lifetime(&self) -> Duration {
        self.resend * 4
    }
}

pub const DEFAULT_RESEND: Duration = Duration::from_secs(60);
const API_PATH: &str = "/api/v2/alerts";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    url: Option<Spanned<String>>,
    urls: Option<Spanned<Vec<Spanned<String>>>>,
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<i64>>,
    resend: Option<Spanned<String>>,
    #[serde(default)]
    annotations: BTreeMap<Spanned<String>, Spanned<String>>,
    generator_url: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    tls_verify: Option<bool>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    mut table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<AlertmanagerAction> {
    let headers_value = table.remove_entry("headers").map(|(_, v)| v);
    let raw: RawAlertmanager = deserialize_table_also(ctx, table, span.clone(), &["headers"])?;
    let before = ctx.errors.len();
    let written: Vec<&Spanned<String>> = match (&raw.url, &raw.urls) {
        (Some(u), None) => vec![u],
        (None, Some(us)) if !us.get_ref().is_empty() => us.get_ref().iter().collect(),
        (None, Some(us)) => {
            ctx.error(us.span(), "`urls` is empty: give at least one Alertmanager");
            Vec::new()
        }
        (Some(u), Some(_)) => {
            ctx.error(
                u.span(),
                "give either `url` (one Alertmanager) or `urls` (every member of a cluster), not both",
            );
            Vec::new()
        }
        (None, None) => {
            ctx.error(
                span,
                "an alertmanager action needs `url` (or `urls` for every member of a cluster)",
            );
            Vec::new()
        }
    };
    let endpoints: Vec<Secret> = written
        .into_iter()
        .filter_map(|u| {
            let s = secret::resolve(ctx, u)?;
            match endpoint(s.expose()) {
                Some(e) => Some(s.with_value(e)),
                None => {
                    // Neither the value nor the parse error is shown: both could hold a secret.
                    ctx.error(
                        u.span(),
                        "an Alertmanager `url` must be an http:// or https:// URL, e.g. \"http://127.0.0.1:9093\"",
                    );
                    None
                }
            }
        })
        .collect();
    let headers = headers_value.map(|h| headers(ctx, h)).unwrap_or_default();
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_WEBHOOK_TIMEOUT);
    let resend = values::positive_duration(ctx, &raw.resend, "resend", DEFAULT_RESEND);
    let retry = retry(ctx, &raw.retry);
    let mut annotations = BTreeMap::new();
    for (k, v) in &raw.annotations {
        if k.get_ref() == "summary" {
            ctx.error(
                k.span(),
                "the `summary` annotation is the rule's `summary`; set it there",
            );
        }
        values::template(ctx, templates, v);
        annotations.insert(k.get_ref().clone(), v.get_ref().clone());
    }
    if let Some(g) = &raw.generator_url {
        values::template(ctx, templates, g);
    }
    let tls = tls::parse(ctx, &raw.ca, raw.tls_verify);
    if ctx.errors.len() != before {
        return None;
    }
    Some(AlertmanagerAction {
        endpoints,
        headers,
        timeout,
        retry,
        resend,
        annotations,
        generator_url: raw.generator_url.map(Spanned::into_inner),
        tls,
    })
}

/// The alerts endpoint under an Alertmanager's base URL (a route prefix is kept; a URL
/// that already names the endpoint is taken as it is).
fn endpoint(base: &str) -> Option<String> {
    let mut url = Url::parse(base.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with(API_PATH) {
        url.set_path(&format!("{path}{API_PATH}"));
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_under_the_base_url() {
        assert_eq!(
            endpoint("http://127.0.0.1:9093").as_deref(),
            Some("http://127.0.0.1:9093/api/v2/alerts")
        );
        assert_eq!(
            endpoint("https://am.example/prefix/").as_deref(),
            Some("https://am.example/prefix/api/v2/alerts")
        );
        assert_eq!(
            endpoint("http://[::1]:9093/api/v2/alerts").as_deref(),
            Some("http://[::1]:9093/api/v2/alerts")
        );
        assert_eq!(endpoint("ftp://x"), None);
        assert_eq!(endpoint("127.0.0.1:9093"), None);
    }
}
