//! `type = "notify"`: a firing as a message to a chat room or a pager (Slack, Discord,
//! Teams, Telegram, Matrix, ntfy, Gotify, Pushover, PagerDuty, Opsgenie), through the
//! outbox like a webhook. `title` and `body` render first, then each service's message
//! is built and escaped (payload.rs, escape.rs); its secrets go in only when it is sent
//! (request.rs).

mod escape;
mod payload;
pub(crate) mod request;

use sha2::{Digest as _, Sha256};

use super::render::{Failed, Made, Rendering};
use crate::config::NotifyAction;
use crate::event::FiringState;

/// The title when none is given.
pub const DEFAULT_TITLE: &str = "{{ rule }} on {{ host }}";
/// The body when none is given.
pub const DEFAULT_BODY: &str = "{{ summary }}";

/// The message of a firing, built for its service.
fn message(a: &NotifyAction, r: &Rendering<'_>) -> Result<(String, String), Failed> {
    let title = r.text(a.title.as_deref().unwrap_or(DEFAULT_TITLE), "its title")?;
    let body = r.text(a.body.as_deref().unwrap_or(DEFAULT_BODY), "its body")?;
    let f = r.firing;
    let dedup = dedup_key(&f.rule, &f.event.host, &f.scope());
    let m = payload::Message {
        title: title.lines().next().unwrap_or_default().to_string(),
        body,
        firing: f.state == FiringState::Firing,
        severity: f.severity.to_string(),
        rule: f.rule.to_string(),
        host: f.event.host.to_string(),
        group: f
            .group
            .as_ref()
            .map(|g| crate::event::group_text(&g.fields)),
        time: crate::event::rfc3339(f.time),
        dedup: dedup.clone(),
        priority: a.priority,
        link: r.link.map(str::to_string),
    };
    Ok((payload::build(a.service, &m).to_string(), dedup))
}

/// What a service keys an incident by: the rule, the host and the group, so a resolve
/// closes what its firing opened; hashed when long (PagerDuty takes 255 characters).
fn dedup_key(rule: &str, host: &str, scope: &str) -> String {
    let key = format!("hark/{host}/{rule}/{scope}").replace(crate::event::GROUP_MARK, "/");
    if key.len() <= 200 {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("hark/{rule}/{hex}")
}

/// What a firing makes of the action: one delivery, its incident key as its route.
pub(super) fn make(a: &NotifyAction, r: &Rendering<'_>) -> Result<Made, Failed> {
    let (body, dedup) = message(a, r)?;
    let delivery = super::outbox::Delivery {
        route: Some(dedup),
        ..r.delivery(body, "application/json")
    };
    Ok(Made::Deliveries(vec![delivery]))
}

/// The exact request it would send, secrets masked, for `hark test`.
pub(super) fn preview(a: &NotifyAction, r: &Rendering<'_>) -> Result<String, Failed> {
    let (body, dedup) = message(a, r)?;
    let state = r.firing.state.as_str();
    let req = request::make(a, &body, state, "IDEMPOTENCY-KEY", &dedup);
    let mut text = format!(
        "notify `{}` ({}): {} {}",
        r.name,
        a.service.name(),
        req.method,
        mask(a, &req.url)
    );
    for (k, v) in &req.headers {
        text.push_str(&format!("\n  {k}: {}", mask(a, v)));
    }
    text.push_str(&format!("\n  {}", mask(a, &req.body)));
    Ok(text)
}

/// `s` with each of the action's secret values replaced: by the reference it was
/// written as, or by `***` when it was written as it is.
fn mask(a: &NotifyAction, s: &str) -> String {
    let mut out = s.to_string();
    for secret in [&a.url, &a.token, &a.to].into_iter().flatten() {
        let value = secret.expose();
        if value.is_empty() {
            continue;
        }
        let written = secret.to_string();
        let shown = if written != value {
            written
        } else {
            "***".to_string()
        };
        out = out.replace(value, &shown);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_key_is_stable_and_short() {
        let a = dedup_key("disk", "web1", "\u{1e}[\"/\"]");
        assert_eq!(a, dedup_key("disk", "web1", "\u{1e}[\"/\"]"));
        assert!(!a.contains('\u{1e}'));
        let long = dedup_key("disk", "web1", &"x".repeat(1000));
        assert!(long.len() < 100, "{long}");
    }
}
