//! `type = "notify"`: a message to a chat room or a pager, through the outbox. `service`
//! names the service; its keys are what the service gave the person (a webhook URL, a
//! bot token and a chat, a routing key), each a secret reference where it is a secret.
//! `title` and `body` are templates over the firing, escaped for the service after
//! rendering.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::secret::{self, Secret};
use super::table::deserialize_table;
use super::{values, Ctx};

#[derive(Debug, Clone)]
pub struct NotifyAction {
    pub service: Service,
    /// The service's API base (its own by default; a self-hosted server's, a test's).
    pub api_url: String,
    /// The webhook URL (Slack, Discord, Teams): a secret.
    pub url: Option<Secret>,
    /// The bot, app, access or API token, or the routing key: a secret.
    pub token: Option<Secret>,
    /// Telegram's chat, Matrix's room, ntfy's topic, Pushover's user key.
    pub to: Option<Secret>,
    pub title: Option<String>,
    pub body: Option<String>,
    /// The service's priority, overriding the one from the rule's severity.
    pub priority: Option<i64>,
    pub timeout: Duration,
    pub retry: Option<u32>,
}

/// The services `notify` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Slack,
    Discord,
    Teams,
    Telegram,
    Matrix,
    Ntfy,
    Gotify,
    Pushover,
    PagerDuty,
    Opsgenie,
}

const SERVICES: &str =
    "slack, discord, teams, telegram, matrix, ntfy, gotify, pushover, pagerduty, opsgenie";

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Slack => "slack",
            Service::Discord => "discord",
            Service::Teams => "teams",
            Service::Telegram => "telegram",
            Service::Matrix => "matrix",
            Service::Ntfy => "ntfy",
            Service::Gotify => "gotify",
            Service::Pushover => "pushover",
            Service::PagerDuty => "pagerduty",
            Service::Opsgenie => "opsgenie",
        }
    }

    fn parse(s: &str) -> Option<Service> {
        Some(match s {
            "slack" => Service::Slack,
            "discord" => Service::Discord,
            "teams" => Service::Teams,
            "telegram" => Service::Telegram,
            "matrix" => Service::Matrix,
            "ntfy" => Service::Ntfy,
            "gotify" => Service::Gotify,
            "pushover" => Service::Pushover,
            "pagerduty" => Service::PagerDuty,
            "opsgenie" => Service::Opsgenie,
            _ => return None,
        })
    }

    /// Its API's base, when it has one of its own.
    fn default_api(self) -> Option<&'static str> {
        match self {
            Service::Telegram => Some("https://api.telegram.org"),
            Service::Ntfy => Some("https://ntfy.sh"),
            Service::Pushover => Some("https://api.pushover.net"),
            Service::PagerDuty => Some("https://events.pagerduty.com"),
            Service::Opsgenie => Some("https://api.opsgenie.com"),
            // A webhook URL says it all; a homeserver and a Gotify are the user's own.
            _ => None,
        }
    }

    /// Which keys it takes: (`url`, `token`, `to`) as each is named for it, `None` when
    /// it takes none, and whether `api_url` must be given.
    fn keys(
        self,
    ) -> (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        bool,
    ) {
        match self {
            Service::Slack | Service::Discord | Service::Teams => (Some("url"), None, None, false),
            Service::Telegram => (None, Some("token"), Some("chat_id"), false),
            Service::Matrix => (None, Some("token"), Some("room"), true),
            Service::Ntfy => (None, None, Some("topic"), false),
            Service::Gotify => (None, Some("token"), None, true),
            Service::Pushover => (None, Some("token"), Some("user"), false),
            Service::PagerDuty => (None, Some("routing_key"), None, false),
            Service::Opsgenie => (None, Some("api_key"), None, false),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    service: Spanned<String>,
    api_url: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    routing_key: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    chat_id: Option<Spanned<String>>,
    room: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    title: Option<Spanned<String>>,
    body: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    retry: Option<Spanned<i64>>,
}

pub(crate) fn parse(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<NotifyAction> {
    let raw: RawNotify = deserialize_table(ctx, table, span)?;
    let Some(service) = Service::parse(raw.service.get_ref().trim()) else {
        let known: Vec<String> = SERVICES.split(", ").map(str::to_string).collect();
        let mut budget = usize::MAX;
        let hint = super::suggest::suggest(raw.service.get_ref(), known.iter(), &mut budget);
        let msg = format!(
            "unknown service {:?}{hint}: one of {SERVICES}",
            raw.service.get_ref()
        );
        ctx.error(raw.service.span(), msg);
        return None;
    };
    let before = ctx.errors.len();
    let (url, token, to) = secrets(ctx, service, &raw);
    let api_url = api_of(ctx, service, &raw);
    for t in [&raw.title, &raw.body].into_iter().flatten() {
        values::template(ctx, templates, t);
    }
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", Duration::from_secs(10));
    let retry = raw
        .retry
        .as_ref()
        .and_then(|r| match u32::try_from(*r.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                ctx.error(
                    r.span(),
                    "`retry` is attempts at most, a whole number of at least 1",
                );
                None
            }
        });
    if ctx.errors.len() > before {
        return None;
    }
    Some(NotifyAction {
        service,
        api_url: api_url?,
        url,
        token,
        to,
        title: raw.title.map(Spanned::into_inner),
        body: raw.body.map(Spanned::into_inner),
        priority: raw.priority.map(Spanned::into_inner),
        timeout,
        retry,
    })
}

/// The service's keys (`url`, a token, a recipient), each resolved and checked for its
/// shape; a key it does not take is an error.
fn secrets(
    ctx: &mut Ctx,
    service: Service,
    raw: &RawNotify,
) -> (Option<Secret>, Option<Secret>, Option<Secret>) {
    let (url_key, token_key, to_key, _) = service.keys();
    let given: [(&str, &Option<Spanned<String>>); 7] = [
        ("url", &raw.url),
        ("token", &raw.token),
        ("routing_key", &raw.routing_key),
        ("api_key", &raw.api_key),
        ("chat_id", &raw.chat_id),
        ("room", &raw.room),
        ("topic", &raw.topic),
    ];
    let taken = |key: Option<&str>, ctx: &mut Ctx| -> Option<Secret> {
        let key = key?;
        let value = given
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_ref())
            .or(if key == "user" {
                raw.user.as_ref()
            } else {
                None
            });
        match value {
            Some(v) => shaped(ctx, service, key, v),
            None => {
                ctx.error(
                    raw.service.span(),
                    format!("`service = \"{}\"` needs `{key}`", service.name()),
                );
                None
            }
        }
    };
    let url = taken(url_key, ctx);
    let token = match (service, &raw.token) {
        // ntfy's token is optional (a public topic needs none).
        (Service::Ntfy, Some(t)) => secret::resolve(ctx, t),
        _ => taken(token_key, ctx),
    };
    let to = taken(to_key, ctx);
    for (key, value) in given.iter().chain([("user", &raw.user)].iter()) {
        let used = [url_key, token_key, to_key].contains(&Some(*key))
            || (service == Service::Ntfy && *key == "token");
        if let (false, Some(v)) = (used, value) {
            ctx.error(
                v.span(),
                format!("`{key}` is not a key of `service = \"{}\"`", service.name()),
            );
        }
    }
    (url, token, to)
}

/// `api_url`, or the service's own; required for a self-hosted one.
fn api_of(ctx: &mut Ctx, service: Service, raw: &RawNotify) -> Option<String> {
    let (_, _, _, api_required) = service.keys();
    match (&raw.api_url, service.default_api()) {
        (Some(a), _) => api(ctx, a),
        (None, Some(d)) => Some(d.to_string()),
        (None, None) if api_required => {
            ctx.error(
                raw.service.span(),
                format!(
                    "`service = \"{}\"` needs `api_url`: the server's address",
                    service.name()
                ),
            );
            None
        }
        (None, None) => Some(String::new()),
    }
}

/// A key's value, resolved, and checked for the shape the service gives it; the error
/// names the key and the shape, never the value.
fn shaped(ctx: &mut Ctx, service: Service, key: &str, value: &Spanned<String>) -> Option<Secret> {
    let s = secret::resolve(ctx, value)?;
    let v = s.expose();
    let ok = match (service, key) {
        (_, "url") => v.starts_with("https://") || v.starts_with("http://"),
        // `123456789:AA…`: the bot's id, a colon, its secret.
        (Service::Telegram, "token") => v.split_once(':').is_some_and(|(id, rest)| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && rest.len() >= 20
        }),
        (Service::Telegram, "chat_id") => {
            v.strip_prefix('-')
                .unwrap_or(v)
                .bytes()
                .all(|b| b.is_ascii_digit())
                && !v.is_empty()
                || v.starts_with('@')
        }
        (Service::Matrix, "room") => v.starts_with('!') && v.contains(':'),
        (Service::Pushover, "token" | "user") => {
            v.len() == 30 && v.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        (Service::PagerDuty, "routing_key") => {
            v.len() == 32 && v.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        (Service::Ntfy, "topic") => {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        _ => !v.is_empty() && !v.chars().any(char::is_whitespace),
    };
    if !ok {
        let shape = match (service, key) {
            (_, "url") => "an https:// URL, as the service gave it",
            (Service::Telegram, "token") => {
                "the bot's token as BotFather gives it: digits, `:`, then its secret"
            }
            (Service::Telegram, "chat_id") => {
                "a chat's number (negative for a group) or @channelname"
            }
            (Service::Matrix, "room") => "a room id, as `!abc123:example.org`",
            (Service::Pushover, _) => "30 letters and digits",
            (Service::PagerDuty, _) => "an integration's routing key: 32 letters and digits",
            (Service::Ntfy, "topic") => "letters, digits, `_` and `-`",
            _ => "a value with no spaces",
        };
        ctx.error(
            value.span(),
            format!("`{key}` of {}: not {shape}", service.name()),
        );
        return None;
    }
    Some(s)
}

fn api(ctx: &mut Ctx, value: &Spanned<String>) -> Option<String> {
    let v = value.get_ref().trim().trim_end_matches('/');
    if !(v.starts_with("https://") || v.starts_with("http://")) {
        ctx.error(value.span(), "`api_url` must be an http:// or https:// URL");
        return None;
    }
    Some(v.to_string())
}
