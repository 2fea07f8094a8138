//! `type = "amqp"`, `"mqtt"` and `"nats"`: a message per firing to a broker, with a
//! webhook's payload, through the outbox. Confirmed publishes only: an AMQP publisher
//! confirm, an MQTT PUBACK (QoS 1), a JetStream ack (`jetstream = true`; core NATS has no
//! acknowledgement, so there a publish counts once the server has it, after a flush).

use std::ops::Range;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::secret::{self, Secret};
use super::table::deserialize_table;
use super::tls::{self, TlsOptions};
use super::values;
use super::webhook::{payload, retry, Payload};
use super::Ctx;

#[derive(Debug, Clone)]
pub struct BrokerAction {
    pub protocol: Protocol,
    /// May hold secret references (credentials in the URL).
    pub url: Secret,
    /// The routing key, topic or subject: a template.
    pub route: String,
    /// For one attempt: connecting and the broker's acknowledgement included.
    pub timeout: Duration,
    /// Attempts at most; `None`: until delivered.
    pub retry: Option<u32>,
    pub payload: Payload,
    /// For amqps://, mqtts:// and tls://.
    pub tls: TlsOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// RabbitMQ: a persistent message to `exchange` ("" is the default exchange, which
    /// routes by queue name), `mandatory`, with publisher confirms.
    Amqp {
        exchange: String,
    },
    /// QoS 1.
    Mqtt {
        retain: bool,
    },
    Nats {
        jetstream: bool,
    },
}

impl Protocol {
    pub fn type_name(&self) -> &'static str {
        match self {
            Protocol::Amqp { .. } => "amqp",
            Protocol::Mqtt { .. } => "mqtt",
            Protocol::Nats { .. } => "nats",
        }
    }
}

pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmqp {
    url: Spanned<String>,
    exchange: Option<String>,
    routing_key: Spanned<String>,
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<i64>>,
    json: Option<Spanned<serde_json::Value>>,
    body: Option<Spanned<String>>,
    content_type: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    tls_verify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    url: Spanned<String>,
    topic: Spanned<String>,
    qos: Option<Spanned<i64>>,
    retain: Option<bool>,
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<i64>>,
    json: Option<Spanned<serde_json::Value>>,
    body: Option<Spanned<String>>,
    content_type: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    tls_verify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: Spanned<String>,
    subject: Spanned<String>,
    jetstream: Option<bool>,
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<i64>>,
    json: Option<Spanned<serde_json::Value>>,
    body: Option<Spanned<String>>,
    content_type: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    tls_verify: Option<bool>,
}

/// What every broker action has, read from its raw table.
struct Common<'a> {
    url: &'a Spanned<String>,
    route: &'a Spanned<String>,
    timeout: &'a Option<Spanned<String>>,
    retry: &'a Option<Spanned<i64>>,
    json: &'a Option<Spanned<serde_json::Value>>,
    body: &'a Option<Spanned<String>>,
    content_type: &'a Option<Spanned<String>>,
    ca: &'a Option<Spanned<String>>,
    tls_verify: Option<bool>,
}

/// The keys every broker action has, from one of the raw tables; `$route` names its
/// routing key, topic or subject.
macro_rules! common {
    ($raw:ident, $route:ident) => {
        Common {
            url: &$raw.url,
            route: &$raw.$route,
            timeout: &$raw.timeout,
            retry: &$raw.retry,
            json: &$raw.json,
            body: &$raw.body,
            content_type: &$raw.content_type,
            ca: &$raw.ca,
            tls_verify: $raw.tls_verify,
        }
    };
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    ty: &str,
    table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<BrokerAction> {
    match ty {
        "amqp" => {
            let raw: RawAmqp = deserialize_table(ctx, table, span)?;
            let protocol = Protocol::Amqp {
                exchange: raw.exchange.clone().unwrap_or_default(),
            };
            let common = common!(raw, routing_key);
            finish(ctx, protocol, &common, templates)
        }
        "mqtt" => {
            let raw: RawMqtt = deserialize_table(ctx, table, span)?;
            if let Some(q) = &raw.qos {
                if *q.get_ref() != 1 {
                    ctx.error(
                        q.span(),
                        "hark publishes at `qos = 1` only: a delivery leaves the outbox on the broker's PUBACK (QoS 0 has no acknowledgement; QoS 2 is not supported)",
                    );
                }
            }
            let protocol = Protocol::Mqtt {
                retain: raw.retain.unwrap_or(false),
            };
            let common = common!(raw, topic);
            finish(ctx, protocol, &common, templates)
        }
        _ => {
            let raw: RawNats = deserialize_table(ctx, table, span)?;
            let protocol = Protocol::Nats {
                jetstream: raw.jetstream.unwrap_or(false),
            };
            let common = common!(raw, subject);
            finish(ctx, protocol, &common, templates)
        }
    }
}

fn finish(
    ctx: &mut Ctx,
    protocol: Protocol,
    raw: &Common<'_>,
    templates: &minijinja::Environment<'static>,
) -> Option<BrokerAction> {
    let before = ctx.errors.len();
    let url = secret::resolve(ctx, raw.url);
    if let Some(u) = &url {
        check_url(ctx, &protocol, raw.url.span(), u.expose());
    }
    if raw.route.get_ref().trim().is_empty() {
        let key = match protocol {
            Protocol::Amqp { .. } => "routing_key",
            Protocol::Mqtt { .. } => "topic",
            Protocol::Nats { .. } => "subject",
        };
        ctx.error(raw.route.span(), format!("`{key}` must not be empty"));
    }
    values::template(ctx, templates, raw.route);
    let timeout = values::positive_duration(ctx, raw.timeout, "timeout", DEFAULT_BROKER_TIMEOUT);
    let retry = retry(ctx, raw.retry);
    let payload = payload(ctx, templates, raw.json, raw.body, raw.content_type);
    let tls = match (&url, raw.ca) {
        (Some(u), Some(ca)) if !is_tls(u.expose()) => {
            ctx.error(
                ca.span(),
                format!(
                    "`ca` has no use without TLS: the url's scheme is {}",
                    tls_schemes(&protocol)
                ),
            );
            TlsOptions::default()
        }
        _ => tls::parse(ctx, raw.ca, raw.tls_verify),
    };
    if ctx.errors.len() != before {
        return None;
    }
    Some(BrokerAction {
        protocol,
        url: url?,
        route: raw.route.get_ref().clone(),
        timeout,
        retry,
        payload,
        tls,
    })
}

/// Whether a broker URL asks for TLS.
pub fn is_tls(url: &str) -> bool {
    Url::parse(url.trim()).is_ok_and(|u| matches!(u.scheme(), "amqps" | "mqtts" | "ssl" | "tls"))
}

fn tls_schemes(protocol: &Protocol) -> &'static str {
    match protocol {
        Protocol::Amqp { .. } => "not amqps://",
        Protocol::Mqtt { .. } => "not mqtts://",
        Protocol::Nats { .. } => "not tls://",
    }
}

/// The URL schemes each client speaks. Messages name neither the value nor the parse
/// error: both could hold a password.
fn check_url(ctx: &mut Ctx, protocol: &Protocol, span: Range<usize>, url: &str) {
    let (schemes, example): (&[&str], &str) = match protocol {
        Protocol::Amqp { .. } => (
            &["amqp", "amqps"],
            "amqp://user:password@127.0.0.1:5672/%2f or amqps://user:password@broker.example.org/%2f",
        ),
        Protocol::Mqtt { .. } => (
            &["mqtt", "tcp", "mqtts", "ssl"],
            "mqtt://user:password@127.0.0.1:1883 or mqtts://broker.example.org:8883",
        ),
        Protocol::Nats { .. } => (&["nats", "tls"], "nats://127.0.0.1:4222 or tls://nats.example.org:4222"),
    };
    match Url::parse(url.trim()) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        _ => ctx.error(span, format!("`url` must be a URL like {example}")),
    }
}
