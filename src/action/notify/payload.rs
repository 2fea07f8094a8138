//! Each service's message, as its API documents it, built from a firing's rendered title
//! and body: escaped for the service and cut to its lengths. No secret is in it (tokens,
//! chats and routing keys are put in when it is sent, request.rs), so what the outbox
//! stores and `hark outbox` shows holds none.

use serde_json::{json, Value};

use super::escape::{clean, cut, defang, html, markdown, plain, slack};
use crate::config::Service;

/// A firing, as every service's message is made of it.
pub struct Message {
    pub title: String,
    pub body: String,
    pub firing: bool,
    /// hark's severity: `critical`, `warning`, `info` or another word.
    pub severity: String,
    pub rule: String,
    pub host: String,
    /// `ip=203.0.113.7 user=root`, with `group_by`.
    pub group: Option<String>,
    /// RFC 3339.
    pub time: String,
    /// The rule and group: what a service that resolves keys its incident by.
    pub dedup: String,
    /// `priority` of the action, over the one from the severity.
    pub priority: Option<i64>,
    /// `[daemon] url`: the status page, linked where the service links.
    pub link: Option<String>,
}

impl Message {
    fn colour(&self) -> u32 {
        match (self.firing, self.severity.as_str()) {
            (false, _) => 0x2e_b8_86,
            (true, "critical" | "error") => 0xc0_39_2b,
            (true, "warning") => 0xf1_c4_0f,
            (true, _) => 0x34_98_db,
        }
    }

    /// `firing` / `resolved`, for the line under the title.
    fn state(&self) -> &'static str {
        if self.firing {
            "FIRING"
        } else {
            "RESOLVED"
        }
    }

    /// Rule, host, group: what every message says under its text.
    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![("rule", self.rule.clone()), ("host", self.host.clone())];
        if let Some(g) = &self.group {
            f.push(("group", g.clone()));
        }
        f.push(("severity", self.severity.clone()));
        f
    }

    /// A service's 1–5 scale (ntfy, Opsgenie's P5–P1 reversed).
    fn level(&self) -> i64 {
        match self.severity.as_str() {
            "critical" => 5,
            "error" => 4,
            "warning" => 3,
            "info" => 2,
            _ => 3,
        }
    }
}

/// The JSON body the service documents, secrets left out.
pub fn build(service: Service, m: &Message) -> Value {
    let mut v = message(service, m);
    if let Some(link) = &m.link {
        with_link(service, &mut v, link);
    }
    v
}

fn message(service: Service, m: &Message) -> Value {
    match service {
        Service::Slack => slack_message(m),
        Service::Discord => discord(m),
        Service::Teams => teams(m),
        Service::Telegram => telegram(m),
        Service::Matrix => matrix(m),
        Service::Ntfy => ntfy(m),
        Service::Gotify => gotify(m),
        Service::Pushover => pushover(m),
        Service::PagerDuty => pagerduty(m),
        Service::Opsgenie => opsgenie(m),
    }
}

/// Slack's incoming webhook, Block Kit: a header, the text (a section holds 3,000
/// characters), the facts; `text` is what notifications show.
fn slack_message(m: &Message) -> Value {
    let facts: Vec<String> = m
        .facts()
        .into_iter()
        .map(|(k, v)| format!("*{k}:* {}", slack(&v)))
        .collect();
    json!({
        "text": cut(&slack(&format!("[{}] {}", m.state(), m.title)), 3000),
        "attachments": [{
            "color": format!("#{:06x}", m.colour()),
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": cut(&clean(&format!("{} {}", m.state(), m.title)), 150) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": cut(&slack(&m.body), 3000) } },
                { "type": "context", "elements": [ { "type": "mrkdwn", "text": cut(&facts.join("  "), 3000) } ] },
            ],
        }],
    })
}

/// Discord's webhook: one embed (title 256, description 4,096), no mention parsed.
fn discord(m: &Message) -> Value {
    let fields: Vec<Value> = m
        .facts()
        .into_iter()
        .map(|(k, v)| json!({ "name": k, "value": cut(&markdown(&v), 1024), "inline": true }))
        .collect();
    json!({
        "content": cut(&markdown(&format!("{}: {}", m.state(), m.title)), 2000),
        "embeds": [{
            "title": cut(&clean(&m.title), 256),
            "description": cut(&markdown(&m.body), 4096),
            "color": m.colour(),
            "fields": fields,
            "timestamp": m.time,
        }],
        "allowed_mentions": { "parse": [] },
    })
}

/// Microsoft Teams through a Workflows webhook: an Adaptive Card.
fn teams(m: &Message) -> Value {
    let facts: Vec<Value> = m
        .facts()
        .into_iter()
        .map(|(k, v)| json!({ "title": k, "value": cut(&defang(&v), 1000) }))
        .collect();
    let colour = match (m.firing, m.severity.as_str()) {
        (false, _) => "Good",
        (true, "warning") => "Warning",
        (true, _) => "Attention",
    };
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    { "type": "TextBlock", "text": cut(&defang(&format!("{} {}", m.state(), m.title)), 400), "weight": "Bolder", "size": "Medium", "color": colour, "wrap": true },
                    { "type": "TextBlock", "text": cut(&defang(&m.body), 20000), "wrap": true },
                    { "type": "FactSet", "facts": facts },
                ],
            },
        }],
    })
}

/// Telegram's `sendMessage`, HTML parse mode (4,096 characters after entities are
/// parsed: the escaped text is cut to that, which is never longer).
fn telegram(m: &Message) -> Value {
    let head = format!(
        "<b>{}</b>\n",
        html(&cut(&format!("{} {}", m.state(), m.title), 256))
    );
    let mut tail = format!("\n<i>{}</i>", html(&cut(&facts_line(m), 512)));
    if let Some(link) = &m.link {
        tail.push_str(&format!("\n<a href=\"{}\">status page</a>", html(link)));
    }
    // The body gets what the head and the tail leave, so the link is never cut off.
    let room = 4096usize.saturating_sub(head.chars().count() + tail.chars().count());
    let text = format!("{head}{}{tail}", cut_html(&html(&m.body), room));
    json!({
        "text": text,
        "parse_mode": "HTML",
        "disable_web_page_preview": true,
    })
}

/// Matrix `m.room.message`: plain `body` and HTML `formatted_body`.
fn matrix(m: &Message) -> Value {
    let plain_text = format!("{} {}\n{}\n{}", m.state(), m.title, m.body, facts_line(m));
    json!({
        "msgtype": "m.text",
        "body": cut(&clean(&plain_text), 30000),
        "format": "org.matrix.custom.html",
        "formatted_body": cut_html(
            &format!("<b>{}</b><br>{}<br><i>{}</i>", html(&format!("{} {}", m.state(), m.title)), html(&m.body).replace('\n', "<br>"), html(&facts_line(m))),
            30000,
        ),
    })
}

/// ntfy's JSON publish (the topic is put in when sent).
fn ntfy(m: &Message) -> Value {
    let tag = if m.firing {
        "rotating_light"
    } else {
        "white_check_mark"
    };
    json!({
        "title": cut(&plain(&format!("{} {}", m.state(), m.title)), 250),
        "message": cut(&plain(&format!("{}\n{}", m.body, facts_line(m))), 4000),
        "priority": m.priority.unwrap_or(if m.firing { m.level() } else { 3 }).clamp(1, 5),
        "tags": [tag, m.severity.clone()],
    })
}

/// Gotify's message API: priority 0–10.
fn gotify(m: &Message) -> Value {
    json!({
        "title": cut(&plain(&format!("{} {}", m.state(), m.title)), 250),
        "message": cut(&plain(&format!("{}\n{}", m.body, facts_line(m))), 30000),
        "priority": m.priority.unwrap_or(if m.firing { m.level() * 2 } else { 2 }).clamp(0, 10),
    })
}

/// Pushover's messages API (token and user put in when sent): title 250, message 1,024;
/// priority 2 (emergency) repeats every `retry` seconds until acknowledged or `expire`.
fn pushover(m: &Message) -> Value {
    let default = match (m.firing, m.severity.as_str()) {
        (false, _) => 0,
        (true, "critical") => 1,
        _ => 0,
    };
    let priority = m.priority.unwrap_or(default).clamp(-2, 2);
    let mut v = json!({
        "title": cut(&clean(&format!("{} {}", m.state(), m.title)), 250),
        "message": cut_html(&format!("{}\n<i>{}</i>", html(&m.body), html(&facts_line(m))), 1024),
        "html": 1,
        "priority": priority,
        "timestamp": 0,
    });
    if priority == 2 {
        v["retry"] = json!(60);
        v["expire"] = json!(3600);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(&m.time) {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        v["timestamp"] = json!(secs);
    }
    v
}

/// PagerDuty's Events API v2: `trigger`, and `resolve` with the same `dedup_key`, so a
/// resolve closes the incident (the routing key is put in when sent).
fn pagerduty(m: &Message) -> Value {
    let severity = match m.severity.as_str() {
        s @ ("critical" | "error" | "warning" | "info") => s,
        _ => "error",
    };
    let details: serde_json::Map<String, Value> = m
        .facts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(cut(&plain(&v), 1000))))
        .chain([(
            "body".to_string(),
            Value::String(cut(&plain(&m.body), 10000)),
        )])
        .collect();
    let mut v = json!({
        "event_action": if m.firing { "trigger" } else { "resolve" },
        "dedup_key": cut(&m.dedup, 255),
    });
    if m.firing {
        v["payload"] = json!({
            "summary": cut(&plain(&m.title), 1024),
            "source": cut(&plain(&m.host), 255),
            "severity": severity,
            "timestamp": m.time,
            "component": cut(&plain(&m.rule), 255),
            "custom_details": details,
        });
    }
    v
}

/// Opsgenie's alert API: created with `alias`, closed by alias on resolve (message 130,
/// description 15,000).
fn opsgenie(m: &Message) -> Value {
    if !m.firing {
        return json!({ "source": "hark", "note": cut(&plain(&format!("resolved: {}", m.title)), 25000) });
    }
    let priority = m.priority.map_or_else(
        || format!("P{}", 6 - m.level()),
        |p| format!("P{}", p.clamp(1, 5)),
    );
    let details: serde_json::Map<String, Value> = m
        .facts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(cut(&plain(&v), 8000))))
        .collect();
    json!({
        "message": cut(&plain(&m.title), 130),
        "alias": cut(&m.dedup, 512),
        "description": cut(&plain(&m.body), 15000),
        "priority": priority,
        "source": cut(&plain(&m.host), 100),
        "details": details,
    })
}

/// The status page's link, where each service puts one. The URL is hark's own
/// configuration (checked an http(s) URL), still escaped where it goes into markup.
fn with_link(service: Service, v: &mut Value, link: &str) {
    const TEXT: &str = "status page";
    match service {
        Service::Slack => {
            let text = format!("<{}|{TEXT}>", slack(link).replace('|', "%7C"));
            let block =
                json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": text } ] });
            if let Some(blocks) = v["attachments"][0]["blocks"].as_array_mut() {
                blocks.push(block);
            }
        }
        Service::Discord => v["embeds"][0]["url"] = json!(link),
        Service::Teams => {
            v["attachments"][0]["content"]["actions"] =
                json!([{ "type": "Action.OpenUrl", "title": TEXT, "url": link }]);
        }
        // In the text already (telegram()), within its length.
        Service::Telegram => {}
        Service::Matrix => {
            append(
                v,
                "formatted_body",
                &format!("<br><a href=\"{}\">{TEXT}</a>", html(link)),
            );
            append(v, "body", &format!("\n{link}"));
        }
        Service::Ntfy => v["click"] = json!(link),
        Service::Gotify => {
            v["extras"] = json!({ "client::notification": { "click": { "url": link } } });
        }
        Service::Pushover => {
            v["url"] = json!(link);
            v["url_title"] = json!(TEXT);
        }
        Service::PagerDuty => v["links"] = json!([{ "href": link, "text": TEXT }]),
        Service::Opsgenie => {
            if v["details"].is_object() {
                v["details"]["status_page"] = json!(link);
            }
        }
    }
}

/// Text added at the end of a string field.
fn append(v: &mut Value, field: &str, more: &str) {
    if let Some(s) = v[field].as_str() {
        v[field] = Value::String(format!("{s}{more}"));
    }
}

fn facts_line(m: &Message) -> String {
    m.facts()
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Escaped HTML cut to `max` characters without leaving a tag or an entity open: what is
/// cut is the text's end, then the tags this module opened are closed.
fn cut_html(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out = cut(s, max.saturating_sub(16));
    // An entity or a tag cut in the middle: back to before it.
    if let Some(amp) = out.rfind('&') {
        if !out[amp..].contains(';') {
            out.truncate(amp);
        }
    }
    if let Some(lt) = out.rfind('<') {
        if !out[lt..].contains('>') {
            out.truncate(lt);
        }
    }
    for tag in ["b", "i"] {
        if out.matches(&format!("<{tag}>")).count() > out.matches(&format!("</{tag}>")).count() {
            out.push_str(&format!("</{tag}>"));
        }
    }
    out
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
