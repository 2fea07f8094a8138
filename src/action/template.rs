//! Rendering templates against a firing. Every template was compiled once when the
//! config was checked; here they are compiled again into one environment, by name.

use std::collections::HashMap;

use minijinja::Environment;
use serde_json::{json, Value};

use crate::config::{template_env, ActionKind, Config, ShellProgram};

/// A firing as templates see it, and as JSON for the environment of shell actions.
pub struct RenderContext {
    pub json: Value,
    pub value: minijinja::Value,
}
use crate::event::{display_lossy, Firing};

/// All templates of a configuration, compiled.
pub struct Templates {
    env: Environment<'static>,
    /// Names under which each source is registered, so equal sources compile once.
    names: HashMap<String, String>,
}

impl Templates {
    pub fn new(config: &Config) -> Self {
        let mut t = Templates {
            env: template_env(),
            names: HashMap::new(),
        };
        for rule in config.rules.values() {
            if let Some(s) = &rule.summary {
                t.add(s);
            }
        }
        for action in config.actions.values() {
            match &action.kind {
                ActionKind::Shell(s) => {
                    if let ShellProgram::Argv(argv) = &s.program {
                        argv.iter().for_each(|a| t.add(a));
                    }
                    s.env.values().for_each(|v| t.add(v));
                }
                ActionKind::Systemd(s) => t.add(&s.unit),
                ActionKind::Email(e) => {
                    t.add(&e.subject);
                    t.add(&e.body);
                }
                ActionKind::Webhook(w) => t.add_payload(&w.payload),
                ActionKind::Broker(b) => {
                    t.add(&b.route);
                    t.add_payload(&b.payload);
                }
                ActionKind::Notify(n) => {
                    t.add(n.title.as_deref().unwrap_or(super::notify::DEFAULT_TITLE));
                    t.add(n.body.as_deref().unwrap_or(super::notify::DEFAULT_BODY));
                }
                ActionKind::Alertmanager(am) => {
                    am.annotations.values().for_each(|v| t.add(v));
                    am.generator_url.iter().for_each(|g| t.add(g));
                }
            }
        }
        t
    }

    fn add_payload(&mut self, p: &crate::config::Payload) {
        match p {
            crate::config::Payload::Json(v) => self.add_json(v),
            crate::config::Payload::Body { template, .. } => self.add(template),
            crate::config::Payload::Default => {}
        }
    }

    fn add_json(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.add(s),
            Value::Array(a) => a.iter().for_each(|x| self.add_json(x)),
            Value::Object(o) => o.values().for_each(|x| self.add_json(x)),
            _ => {}
        }
    }

    fn add(&mut self, source: &str) {
        if self.names.contains_key(source) {
            return;
        }
        let name = format!("t{}", self.names.len());
        if let Err(e) = self
            .env
            .add_template_owned(name.clone(), source.to_string())
        {
            // Config validation compiled the same source; this cannot fail unless that did.
            tracing::error!(error = %e, "template does not compile");
            return;
        }
        self.names.insert(source.to_string(), name);
    }

    /// Renders a template known at load; a source not seen then is compiled on the spot.
    /// What a template may do is bounded (`TEMPLATE_FUEL`, `TEMPLATE_MAX_OUTPUT`): past
    /// either, the render fails with an error that says so.
    pub fn render(&self, source: &str, ctx: &RenderContext) -> Result<String, minijinja::Error> {
        let ctx = ctx.value.clone();
        let out = match self.names.get(source) {
            Some(name) => self.env.get_template(name)?.render(ctx),
            None => self.env.render_str(source, ctx),
        };
        out.map_err(bounded)
            .and_then(|s| within_output_cap(s.len()).map(|()| s))
    }

    /// Evaluates one expression (the inside of a `{{ }}`), keeping its value's type.
    pub fn eval(
        &self,
        expr: &str,
        ctx: &RenderContext,
    ) -> Result<minijinja::Value, minijinja::Error> {
        let v = self
            .env
            .compile_expression(expr)?
            .eval(ctx.value.clone())
            .map_err(bounded)?;
        within_output_cap(v.as_str().map_or(0, str::len)).map(|()| v)
    }
}

/// A template that used up its budget, in words a person can act on.
fn bounded(e: minijinja::Error) -> minijinja::Error {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        minijinja::Error::new(
            minijinja::ErrorKind::OutOfFuel,
            format!(
                "the template did more work than one may (about {} steps or {} MB of data): \
                 bound its loops",
                crate::config::TEMPLATE_FUEL,
                crate::config::TEMPLATE_FUEL * 64 / 1_000_000
            ),
        )
    } else {
        e
    }
}

fn within_output_cap(len: usize) -> Result<(), minijinja::Error> {
    if len > crate::config::TEMPLATE_MAX_OUTPUT {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!(
                "the template rendered {len} bytes: at most {} may be",
                crate::config::TEMPLATE_MAX_OUTPUT
            ),
        ));
    }
    Ok(())
}

/// What a template sees: `rule`, `watch`, `state`, `event`, `summary`, `severity`,
/// `labels`, `host`, `time`, `count`, `last` (a burst's last event; else `event`),
/// `kinds` (the kinds of a burst's events), `duration`, and `group` (a map; empty
/// without `group_by`).
pub fn context(firing: &Firing, templates: &Templates) -> RenderContext {
    let event = Value::Object(firing.event.to_json());
    let mut ctx = json!({
        "rule": &*firing.rule,
        "watch": &*firing.event.watch,
        "state": firing.state.as_str(),
        "event": event,
        "severity": &*firing.severity,
        "labels": &*firing.labels,
        "host": &*firing.event.host,
        "time": crate::event::rfc3339(firing.time),
        "count": firing.count,
        "last": firing.last.as_ref().map_or_else(|| event.clone(), |l| Value::Object(l.to_json())),
        "kinds": kinds(firing),
        "duration": crate::event::human_duration(firing.duration),
        "summary": "",
        "group": firing.group.as_ref().map(|g| &*g.fields).cloned().unwrap_or_default(),
    });
    let summary = match &firing.summary {
        Some(s) => templates
            .render(
                s,
                &RenderContext {
                    value: minijinja::Value::from(minijinja::value::Serde(&ctx)),
                    json: Value::Null,
                },
            )
            .unwrap_or_else(|e| {
                tracing::warn!(rule = %firing.rule, error = %e, "summary did not render");
                String::new()
            }),
        None => default_summary(firing),
    };
    ctx["summary"] = Value::from(summary);
    RenderContext {
        value: minijinja::Value::from(minijinja::value::Serde(&ctx)),
        json: ctx,
    }
}

/// The kinds of a burst's events, or the one event's kind.
pub fn kinds(firing: &Firing) -> Vec<String> {
    if firing.kinds.is_empty() {
        firing
            .event
            .kind()
            .map(str::to_string)
            .into_iter()
            .collect()
    } else {
        firing.kinds.iter().map(|k| k.to_string()).collect()
    }
}

fn default_summary(firing: &Firing) -> String {
    let e = &firing.event;
    let what = match (e.kind(), e.fields.get("path").and_then(Value::as_str)) {
        (Some(k), Some(p)) => format!(" ({k} {})", display_lossy(p)),
        (Some(k), None) => format!(" ({k})"),
        _ => String::new(),
    };
    format!(
        "{} is {} on {}{what}",
        firing.rule,
        firing.state.as_str(),
        e.watch
    )
}
