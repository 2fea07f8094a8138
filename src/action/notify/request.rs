//! A stored notification made into the service's request when it is sent (its secrets
//! put in here, never stored), and the service's answer read: its rate-limit hint
//! (`Retry-After`, Telegram's `retry_after`, Discord's `X-RateLimit-Reset-After`,
//! Matrix's `retry_after_ms`), and for a refusal its own error text, cut, never the URL.

use std::time::Duration;

use serde_json::Value;

use crate::config::{NotifyAction, Service};

/// What is sent: method, URL (may hold a secret), headers (may hold one), body.
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The request for a stored body `body` of `state` (`firing`, `resolved`), whose
/// idempotency key is `key` and whose incident key is `dedup`.
pub fn make(a: &NotifyAction, body: &str, state: &str, key: &str, dedup: &str) -> Request {
    let secret =
        |s: &Option<crate::config::Secret>| s.as_ref().map_or("", |s| s.expose()).to_string();
    let (token, to) = (secret(&a.token), secret(&a.to));
    let mut json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut put = |k: &str, v: &str| {
        if let Value::Object(o) = &mut json {
            o.insert(k.to_string(), Value::String(v.to_string()));
        }
    };
    let api = &a.api_url;
    let post = reqwest::Method::POST;
    let mut headers = Vec::new();
    let (method, url) = match a.service {
        Service::Slack | Service::Discord | Service::Teams => (post, secret(&a.url)),
        Service::Telegram => {
            put("chat_id", &to);
            (post, format!("{api}/bot{token}/sendMessage"))
        }
        Service::Matrix => {
            headers.push(("Authorization", format!("Bearer {token}")));
            let room = form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>();
            let txn = form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>();
            let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
            (reqwest::Method::PUT, format!("{api}{path}"))
        }
        Service::Ntfy => {
            put("topic", &to);
            if !token.is_empty() {
                headers.push(("Authorization", format!("Bearer {token}")));
            }
            (post, format!("{api}/"))
        }
        Service::Gotify => {
            headers.push(("X-Gotify-Key", token));
            (post, format!("{api}/message"))
        }
        Service::Pushover => {
            put("token", &token);
            put("user", &to);
            (post, format!("{api}/1/messages.json"))
        }
        Service::PagerDuty => {
            put("routing_key", &token);
            (post, format!("{api}/v2/enqueue"))
        }
        Service::Opsgenie => {
            headers.push(("Authorization", format!("GenieKey {token}")));
            match state {
                "resolved" => {
                    let alias =
                        form_urlencoded::byte_serialize(dedup.as_bytes()).collect::<String>();
                    (
                        post,
                        format!("{api}/v2/alerts/{alias}/close?identifierType=alias"),
                    )
                }
                _ => (post, format!("{api}/v2/alerts")),
            }
        }
    };
    Request {
        method,
        url,
        headers,
        body: if json.is_null() {
            body.to_string()
        } else {
            json.to_string()
        },
    }
}

/// How long the service asks to wait, from its answer to a 429 (or a 5xx).
pub fn retry_hint(headers: &reqwest::header::HeaderMap, body: &str) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let secs = |s: &str| s.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0);
    if let Some(s) = header("retry-after").and_then(secs) {
        return Some(Duration::from_secs_f64(s));
    }
    if let Some(s) = header("x-ratelimit-reset-after").and_then(secs) {
        return Some(Duration::from_secs_f64(s));
    }
    let v: Value = serde_json::from_str(body).ok()?;
    let number = |v: &Value| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0);
    if let Some(s) = number(&v["parameters"]["retry_after"]).or_else(|| number(&v["retry_after"])) {
        return Some(Duration::from_secs_f64(s));
    }
    number(&v["retry_after_ms"]).map(|ms| Duration::from_secs_f64(ms / 1000.0))
}

/// The service's own words for a refusal: the fields its error shape has (Slack's text,
/// Discord's `message`, Telegram's `description`, Matrix's `errcode`/`error`, Pushover's
/// `errors`, ...), control characters gone, cut at 300 characters.
pub fn error_text(body: &str) -> String {
    let words = match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let mut parts: Vec<String> = [
                "errcode",
                "error",
                "errorDescription",
                "message",
                "description",
            ]
            .iter()
            .filter_map(|k| v[*k].as_str().map(str::to_string))
            .collect();
            // Teams (Azure Logic Apps): {"error": {"code", "message"}}.
            if let Some(m) = v["error"]["message"].as_str() {
                parts.push(m.to_string());
            }
            if let Some(list) = v["errors"].as_array() {
                parts.extend(
                    list.iter()
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string)),
                );
            }
            if parts.is_empty() {
                body.to_string()
            } else {
                parts.join(": ")
            }
        }
        Err(_) => body.to_string(),
    };
    super::escape::cut(super::escape::clean(words.trim()).trim(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_s_retry_hint_is_read() {
        let none = reqwest::header::HeaderMap::new();
        let telegram = r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        assert_eq!(retry_hint(&none, telegram), Some(Duration::from_secs(7)));
        let matrix =
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":1500}"#;
        assert_eq!(retry_hint(&none, matrix), Some(Duration::from_millis(1500)));
        let mut discord = reqwest::header::HeaderMap::new();
        discord.insert("x-ratelimit-reset-after", "2.5".parse().unwrap());
        assert_eq!(
            retry_hint(&discord, "{}"),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(retry_hint(&none, "not json"), None);
    }

    #[test]
    fn a_refusal_is_said_in_the_service_s_words() {
        assert_eq!(error_text("invalid_payload"), "invalid_payload");
        assert_eq!(
            error_text(
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
            ),
            "Bad Request: chat not found"
        );
        assert_eq!(
            error_text(r#"{"status":0,"errors":["application token is invalid"],"request":"x"}"#),
            "application token is invalid"
        );
        assert_eq!(error_text(&"\u{1b}x".repeat(400)).chars().count(), 300);
    }
}
