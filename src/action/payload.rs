//! A webhook's payload for one firing: a `json` table whose strings are templates, a
//! `body` template, or by default a JSON document shaped like Alertmanager's webhook.
//! Built as a `serde_json::Value` and serialised by serde_json, so it is valid JSON
//! whatever quotes, backslashes, newlines or invalid bytes a value holds.

use serde_json::{json, Map, Value};

use super::template::{RenderContext, Templates};
use crate::config::{AlertmanagerAction, Payload};
use crate::event::{display_lossy, rfc3339, Firing, FiringState};

/// The body to send and its content type.
pub fn render(
    payload: &Payload,
    firing: &Firing,
    ctx: &RenderContext,
    templates: &Templates,
) -> Result<(String, String), minijinja::Error> {
    Ok(match payload {
        Payload::Default => (default_payload(firing, ctx).to_string(), json_type()),
        Payload::Json(v) => (render_json(v, ctx, templates)?.to_string(), json_type()),
        Payload::Body {
            template,
            content_type,
        } => (
            display_lossy(&templates.render(template, ctx)?),
            content_type.clone(),
        ),
    })
}

fn json_type() -> String {
    "application/json".to_string()
}

/// The expression of a string that is exactly one `{{ expr }}`, whose value keeps its
/// type (`"{{ event.status }}"` is the number 503).
fn sole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner.trim())
}

fn render_json(
    v: &Value,
    ctx: &RenderContext,
    templates: &Templates,
) -> Result<Value, minijinja::Error> {
    Ok(match v {
        Value::String(s) => match sole_expression(s) {
            Some(expr) => {
                lossy(serde_json::to_value(templates.eval(expr, ctx)?).unwrap_or(Value::Null))
            }
            None => Value::from(display_lossy(&templates.render(s, ctx)?)),
        },
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, ctx, templates))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, ctx, templates)?)))
                .collect::<Result<Map<_, _>, minijinja::Error>>()?,
        ),
        other => other.clone(),
    })
}

/// Bytes a file name carried that are not UTF-8 are shown as U+FFFD in what is sent.
fn lossy(v: Value) -> Value {
    match v {
        Value::String(s) => Value::from(display_lossy(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(lossy).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, lossy(x))).collect()),
        other => other,
    }
}

/// Alertmanager's webhook format where it fits, with the event that caused the firing.
fn default_payload(firing: &Firing, ctx: &RenderContext) -> Value {
    let labels = alert_labels(firing);
    let summary = ctx.json.get("summary").cloned().unwrap_or(Value::from(""));
    let starts = firing.time - firing.duration;
    let ends = match firing.state {
        FiringState::Firing => "0001-01-01T00:00:00Z".to_string(),
        FiringState::Resolved => rfc3339(firing.time),
    };
    let alert = json!({
        "status": firing.state.as_str(),
        "labels": labels,
        "annotations": { "summary": lossy(summary) },
        "startsAt": rfc3339(starts),
        "endsAt": ends,
        "generatorURL": "",
        "count": firing.count,
    });
    json!({
        "version": "4",
        "receiver": "hark",
        "status": firing.state.as_str(),
        "alerts": [alert],
        "groupLabels": { "alertname": &*firing.rule },
        "commonLabels": labels,
        "commonAnnotations": { "summary": lossy(ctx.json.get("summary").cloned().unwrap_or_default()) },
        "externalURL": "",
        "event": lossy(Value::Object(firing.event.to_json())),
    })
}

/// One alert for Alertmanager's `POST /api/v2/alerts`, as a one-element array. The alert
/// of a rule that fires has no `endsAt` here: the outbox sets it when it sends, each time.
pub fn alert(
    am: &AlertmanagerAction,
    firing: &Firing,
    ctx: &RenderContext,
    templates: &Templates,
) -> Result<String, minijinja::Error> {
    let mut annotations = Map::new();
    let summary = ctx.json.get("summary").cloned().unwrap_or_default();
    annotations.insert("summary".into(), lossy(summary));
    for (k, t) in &am.annotations {
        annotations.insert(
            k.clone(),
            Value::from(display_lossy(&templates.render(t, ctx)?)),
        );
    }
    let generator = match &am.generator_url {
        Some(t) => display_lossy(&templates.render(t, ctx)?),
        None => format!("hark://{}/{}", firing.event.host, firing.rule),
    };
    let mut alert = json!({
        "labels": alert_labels(firing),
        "annotations": annotations,
        "startsAt": rfc3339(firing.time - firing.duration),
        "generatorURL": generator,
    });
    match firing.state {
        FiringState::Resolved => alert["endsAt"] = Value::from(rfc3339(firing.time)),
        // An event rule (a file changed, a process exited) without `resolve_after` never
        // resolves: its alert is
        // posted once and ends by itself.
        FiringState::Firing if !firing.resolves => {
            alert["endsAt"] = Value::from(rfc3339(firing.time + am.lifetime()))
        }
        FiringState::Firing => {}
    }
    Ok(Value::Array(vec![alert]).to_string())
}

/// `alertname`, `severity`, `host`, `watch` (one rule over several watches is one alert
/// per watch), the rule's labels and the group's fields (one alert per group). Empty values are left out: Alertmanager reads an
/// empty label as no label.
fn alert_labels(firing: &Firing) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert("alertname".into(), Value::from(&*firing.rule));
    labels.insert("severity".into(), Value::from(&*firing.severity));
    labels.insert("host".into(), Value::from(&*firing.event.host));
    labels.insert("watch".into(), Value::from(&*firing.event.watch));
    for (k, v) in firing.labels.iter() {
        labels.insert(k.clone(), Value::from(v.as_str()));
    }
    // One alert per group: its fields tell them apart.
    for (k, v) in firing.group.iter().flat_map(|g| g.fields.iter()) {
        labels.insert(k.clone(), Value::from(v.as_str()));
    }
    labels.retain(|_, v| v.as_str().is_some_and(|s| !s.is_empty()));
    labels
}

/// Sets `endsAt` on every alert of a firing post that has none: Alertmanager resolves an
/// alert by itself at `endsAt` unless it is posted again before.
pub fn with_ends_at(body: &str, ends: std::time::SystemTime) -> Option<String> {
    let mut alerts: Value = serde_json::from_str(body).ok()?;
    for a in alerts.as_array_mut()? {
        let a = a.as_object_mut()?;
        a.entry("endsAt")
            .or_insert_with(|| Value::from(rfc3339(ends)));
    }
    Some(alerts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_string_that_is_one_expression_keeps_its_type() {
        assert_eq!(sole_expression("{{ event.status }}"), Some("event.status"));
        assert_eq!(sole_expression(" {{x}} "), Some("x"));
        assert_eq!(sole_expression("{{ a }} and {{ b }}"), None);
        assert_eq!(sole_expression("status {{ a }}"), None);
        assert_eq!(sole_expression("{% if a %}{{ a }}{% endif %}"), None);
    }
}
