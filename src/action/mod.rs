//! Actions: what a firing runs. An action receives a firing, never a rule, and does not
//! know which watch woke it.
//!
//! Queueing: every firing's shell actions are spawned as tasks that wait, in order, for one
//! of `max_concurrent_actions` permits. The permits are the daemon's, not a
//! configuration's: a reload keeps the limit and the order of what waits. No firing is
//! dropped; when `MAX_WAITING` actions wait, the engine waits for room before it starts
//! more (and takes no events meanwhile: the watches' own queues then fill and say so).

mod broker;
pub mod email;
mod environment;
mod job;
pub mod outbox;
mod payload;
mod shell;
mod systemd;
mod template;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ActionConfig, ActionKind, Config, ShellProgram};
use crate::event::Firing;
pub use job::ShellJob;
use job::Work;
pub use template::Templates;

/// Shell actions waiting for a permit, at most, before the engine waits for room: each
/// holds its rendered argv and environment (a few KiB).
pub const MAX_WAITING: usize = 10_000;

/// The daemon's slots for shell actions, shared by the dispatchers of every configuration
/// it has run.
#[derive(Clone)]
pub struct Slots {
    permits: Arc<Semaphore>,
    /// The limit now (`max_concurrent_actions`), and how many permits are still owed to a
    /// lowered limit (taken as running actions give theirs back).
    size: Arc<std::sync::Mutex<usize>>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl Slots {
    pub fn new(max_concurrent: usize) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            size: Arc::new(std::sync::Mutex::new(max_concurrent)),
            running: Arc::default(),
            waiting: Arc::default(),
        }
    }

    /// Sets `max_concurrent_actions` (a reload). A lower limit takes effect as running
    /// actions end: the surplus permits are taken, in turn with what waits.
    pub fn resize(&self, max_concurrent: usize) {
        let mut size = self.size.lock().unwrap_or_else(|p| p.into_inner());
        if max_concurrent > *size {
            self.permits.add_permits(max_concurrent - *size);
        } else if max_concurrent < *size {
            let surplus = (*size - max_concurrent) as u32;
            let permits = Arc::clone(&self.permits);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        *size = max_concurrent;
    }

    /// Shell actions running, and waiting for a permit.
    pub fn load(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.running.load(Relaxed), self.waiting.load(Relaxed))
    }

    /// Whether `MAX_WAITING` actions wait for a permit: the engine then waits for room.
    pub fn full(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed) >= MAX_WAITING
    }
}

pub struct Dispatcher {
    actions: HashMap<String, Arc<ActionConfig>>,
    templates: Arc<Templates>,
    slots: Slots,
    tracker: TaskTracker,
    kill: CancellationToken,
}

impl Dispatcher {
    /// No action of this dispatcher is running or waiting.
    pub fn is_idle(&self) -> bool {
        self.tracker.is_empty()
    }

    /// A dispatcher for `config` whose shell actions take their turn in `slots`.
    pub fn new(config: &Config, slots: &Slots) -> Self {
        Dispatcher {
            actions: config
                .actions
                .iter()
                .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                .collect(),
            templates: Arc::new(Templates::new(config)),
            slots: slots.clone(),
            tracker: TaskTracker::new(),
            kill: CancellationToken::new(),
        }
    }

    /// The actions by name, for the outbox.
    pub fn actions(&self) -> HashMap<String, Arc<ActionConfig>> {
        self.actions.clone()
    }

    /// Starts (or queues) every shell action of a firing, and returns its webhook
    /// deliveries, rendered, for the caller to store and hand to the outbox. Never blocks.
    pub fn dispatch(&self, firing: Firing) -> Vec<outbox::Delivery> {
        let prepared = self.prepare(firing);
        self.start(prepared.jobs);
        prepared.deliveries
    }

    /// Starts (or queues) prepared shell actions.
    pub fn start(&self, jobs: Vec<ShellJob>) {
        for job in jobs {
            self.slots
                .waiting
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.tracker.spawn(job.run());
        }
    }

    /// Renders every action of a firing: shell actions ready to start, webhook deliveries
    /// ready to store. Starts nothing.
    pub fn prepare(&self, firing: Firing) -> Prepared {
        let ctx = template::context(&firing, &self.templates);
        let summary = ctx
            .json
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if firing.actions.is_empty() {
            return Prepared {
                jobs: Vec::new(),
                deliveries: Vec::new(),
                summary,
            };
        }
        let mut deliveries = Vec::new();
        let mut jobs = Vec::new();
        for name in &firing.actions {
            let Some(action) = self.actions.get(&**name) else {
                tracing::error!(rule = %firing.rule, action = %name, "no such action");
                continue;
            };
            match &action.kind {
                ActionKind::Shell(shell) => {
                    let prepared = match shell::prepare(shell, &firing, &ctx, &self.templates) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(rule = %firing.rule, action = %name, error = %e, "action not run: a template failed to render");
                            continue;
                        }
                    };
                    jobs.push(self.job(&firing, action, Work::Shell(prepared)));
                }
                ActionKind::Systemd(sd) => match self.templates.render(&sd.unit, &ctx) {
                    Ok(unit) => {
                        let unit = crate::event::display_lossy(&unit);
                        jobs.push(self.job(&firing, action, Work::Systemd(unit)));
                    }
                    Err(e) => {
                        tracing::error!(rule = %firing.rule, action = %name, error = %e, "action not run: its unit failed to render");
                    }
                },
                ActionKind::Webhook(w) => {
                    match payload::render(&w.payload, &firing, &ctx, &self.templates) {
                        Ok((body, content_type)) => deliveries.push(outbox::Delivery::new(
                            &firing,
                            name,
                            body,
                            content_type,
                        )),
                        Err(e) => {
                            tracing::error!(rule = %firing.rule, action = %name, error = %e, "action not run: its payload failed to render");
                        }
                    }
                }
                ActionKind::Email(e) => match render_mail(e, &ctx, &self.templates) {
                    Ok((subject, body)) => deliveries.push(outbox::Delivery {
                        subject: Some(subject),
                        ..outbox::Delivery::new(&firing, name, body, "text/plain".into())
                    }),
                    Err(e) => {
                        tracing::error!(rule = %firing.rule, action = %name, error = %e, "action not run: its message failed to render");
                    }
                },
                ActionKind::Broker(b) => match render_message(b, &firing, &ctx, &self.templates) {
                    Ok((route, body, content_type)) => deliveries.push(outbox::Delivery {
                        route: Some(route),
                        ..outbox::Delivery::new(&firing, name, body, content_type)
                    }),
                    Err(e) => {
                        tracing::error!(rule = %firing.rule, action = %name, error = %e, "action not run: its message failed to render");
                    }
                },
                ActionKind::Alertmanager(am) => {
                    match payload::alert(am, &firing, &ctx, &self.templates) {
                        Ok(body) => {
                            // An event rule's alert ends by itself; only a firing that
                            // fires until it resolves is posted again.
                            let alert = firing
                                .resolves
                                .then(|| outbox::alert_key(name, &firing.rule, &firing.scope()));
                            // Every receiver gets the same delivery, with the same key.
                            let first = outbox::Delivery {
                                alert,
                                ..outbox::Delivery::new(
                                    &firing,
                                    name,
                                    body,
                                    "application/json".into(),
                                )
                            };
                            for target in 0..am.endpoints.len() as u32 {
                                deliveries.push(outbox::Delivery {
                                    target,
                                    ..first.clone()
                                });
                            }
                        }
                        Err(e) => {
                            tracing::error!(rule = %firing.rule, action = %name, error = %e, "action not run: an annotation failed to render");
                        }
                    }
                }
            }
        }
        Prepared {
            jobs,
            deliveries,
            summary,
        }
    }

    fn job(&self, firing: &Firing, action: &Arc<ActionConfig>, work: Work) -> ShellJob {
        ShellJob {
            rule: Arc::clone(&firing.rule),
            watch: Arc::clone(&firing.event.watch),
            queued: Instant::now(),
            action: Arc::clone(action),
            work,
            slots: self.slots.clone(),
            kill: self.kill.clone(),
        }
    }

    /// What each action of a firing would run, rendered, one line each; runs nothing.
    pub fn preview(&self, firing: &Firing) -> Vec<String> {
        let ctx = template::context(firing, &self.templates);
        let mut out = Vec::new();
        for name in &firing.actions {
            let Some(action) = self.actions.get(&**name) else {
                out.push(format!("{name}: no such action"));
                continue;
            };
            match &action.kind {
                ActionKind::Shell(shell) => {
                    match shell::prepare(shell, firing, &ctx, &self.templates) {
                        Ok(p) => {
                            let argv: Vec<String> = p
                                .argv
                                .iter()
                                .map(|a| a.to_string_lossy().into_owned())
                                .collect();
                            out.push(format!("shell `{name}`: {argv:?}"));
                            if let ShellProgram::Script(_) = shell.program {
                                out.push(format!(
                                    "    with HARK_* variables, e.g. HARK_SUMMARY={:?}",
                                    ctx.json
                                        .get("summary")
                                        .and_then(Value::as_str)
                                        .unwrap_or("")
                                ));
                            }
                        }
                        Err(e) => {
                            out.push(format!("shell `{name}`: a template fails to render: {e}"))
                        }
                    }
                }
                ActionKind::Systemd(sd) => match self.templates.render(&sd.unit, &ctx) {
                    Ok(unit) => out.push(format!(
                        "systemd `{name}`: {} {:?} (over D-Bus, waiting up to {})",
                        sd.verb.as_str(),
                        crate::event::display_lossy(&unit),
                        humantime::format_duration(sd.timeout)
                    )),
                    Err(e) => out.push(format!("systemd `{name}`: the unit fails to render: {e}")),
                },
                ActionKind::Email(e) => match render_mail(e, &ctx, &self.templates) {
                    Ok((subject, body)) => out.push(format!(
                        "email `{name}`: to {} via {}:{}, subject {subject:?}\n{body}",
                        e.to.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        e.server.host,
                        e.server.port
                    )),
                    Err(e) => out.push(format!("email `{name}`: the message fails to render: {e}")),
                },
                ActionKind::Broker(b) => match render_message(b, firing, &ctx, &self.templates) {
                    Ok((route, body, content_type)) => out.push(format!(
                        "{} `{name}`: publish to {route:?} ({content_type}) {body}",
                        b.protocol.type_name()
                    )),
                    Err(e) => out.push(format!(
                        "{} `{name}`: the message fails to render: {e}",
                        b.protocol.type_name()
                    )),
                },
                ActionKind::Webhook(w) => {
                    match payload::render(&w.payload, firing, &ctx, &self.templates) {
                        Ok((body, content_type)) => out.push(format!(
                            "webhook `{name}`: {} {} ({content_type}) {body}",
                            w.method, w.url
                        )),
                        Err(e) => out.push(format!(
                            "webhook `{name}`: the payload fails to render: {e}"
                        )),
                    }
                }
                ActionKind::Alertmanager(am) => {
                    match payload::alert(am, firing, &ctx, &self.templates) {
                        Ok(body) => {
                            let urls: Vec<String> =
                                am.endpoints.iter().map(ToString::to_string).collect();
                            out.push(format!(
                                "alertmanager `{name}`: POST /api/v2/alerts of {} {body}",
                                urls.join(", ")
                            ))
                        }
                        Err(e) => out.push(format!(
                            "alertmanager `{name}`: an annotation fails to render: {e}"
                        )),
                    }
                }
            }
        }
        out
    }

    /// Lets running and queued actions finish within `grace`, then kills what is left.
    pub async fn shutdown(self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} action(s) still running after the {} grace period; killing them",
                self.tracker.len(),
                humantime::format_duration(grace)
            );
            self.kill.cancel();
            self.tracker.wait().await;
        }
    }
}

/// A firing's actions, rendered.
pub struct Prepared {
    pub jobs: Vec<ShellJob>,
    pub deliveries: Vec<outbox::Delivery>,
    /// The firing's summary, rendered (what the status page shows of a firing rule).
    pub summary: String,
}

/// A broker message: its routing key (topic, subject), body and content type.
fn render_message(
    b: &crate::config::BrokerAction,
    firing: &Firing,
    ctx: &template::RenderContext,
    templates: &Templates,
) -> Result<(String, String, String), minijinja::Error> {
    let route = crate::event::display_lossy(&templates.render(&b.route, ctx)?);
    let (body, content_type) = payload::render(&b.payload, firing, ctx, templates)?;
    Ok((route, body, content_type))
}

/// An email's subject (on one line) and body.
fn render_mail(
    e: &crate::config::EmailAction,
    ctx: &template::RenderContext,
    templates: &Templates,
) -> Result<(String, String), minijinja::Error> {
    let subject = email::one_line(&crate::event::display_lossy(
        &templates.render(&e.subject, ctx)?,
    ));
    let body = crate::event::display_lossy(&templates.render(&e.body, ctx)?);
    Ok((subject, body))
}
