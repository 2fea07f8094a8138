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
    let text = format!(
        "<b>{}</b>\n{}\n<i>{}</i>",
        html(&format!("{} {}", m.state(), m.title)),
        html(&m.body),
        html(&facts_line(m))
    );
    json!({
        "text": cut_html(&text, 4096),
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
mod tests {
    use super::*;

    fn message(body: &str) -> Message {
        Message {
            title: "disk full on <web1>".into(),
            body: body.into(),
            firing: true,
            severity: "critical".into(),
            rule: "disk".into(),
            host: "web1".into(),
            group: None,
            time: "2026-12-07T10:00:00Z".into(),
            dedup: "disk/web1".into(),
            priority: None,
        }
    }

    #[test]
    fn each_service_gets_its_lengths_whatever_the_field_holds() {
        let m = message(&"x".repeat(100_000));
        let t = build(Service::Telegram, &m);
        assert!(t["text"].as_str().unwrap().chars().count() <= 4096);
        let d = build(Service::Discord, &m);
        assert!(
            d["embeds"][0]["description"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= 4096
        );
        assert_eq!(d["allowed_mentions"]["parse"], json!([]));
        let s = build(Service::Slack, &m);
        let section = &s["attachments"][0]["blocks"][1]["text"]["text"];
        assert!(section.as_str().unwrap().chars().count() <= 3000);
        let p = build(Service::Pushover, &m);
        assert!(p["message"].as_str().unwrap().chars().count() <= 1024);
        let o = build(Service::Opsgenie, &m);
        assert!(o["message"].as_str().unwrap().chars().count() <= 130);
    }

    #[test]
    fn a_cut_html_text_leaves_no_tag_or_entity_open() {
        let m = message(&"&<".repeat(10_000));
        let t = build(Service::Telegram, &m)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            t.ends_with("</b>") || t.ends_with("</i>") || !t.contains("<i>"),
            "{}",
            &t[t.len() - 40..]
        );
        assert!(!t
            .trim_end_matches("</i>")
            .trim_end_matches("</b>")
            .ends_with('&'));
        assert_eq!(t.matches("<b>").count(), t.matches("</b>").count());
    }

    #[test]
    fn a_resolve_closes_what_the_firing_opened() {
        let mut m = message("ok");
        let open = build(Service::PagerDuty, &m);
        m.firing = false;
        let close = build(Service::PagerDuty, &m);
        assert_eq!(open["event_action"], "trigger");
        assert_eq!(close["event_action"], "resolve");
        assert_eq!(open["dedup_key"], close["dedup_key"]);
        assert_eq!(
            build(Service::Opsgenie, &message("x"))["alias"],
            "disk/web1"
        );
    }
}
