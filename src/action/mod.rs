//! Actions: what a firing runs. An action receives a firing, never a rule, and does not
//! know which watch woke it.
//!
//! Queueing: every firing's shell actions are spawned as tasks that wait, in order, for one
//! of `max_concurrent_actions` permits. The permits are the daemon's, not a
//! configuration's: a reload keeps the limit and the order of what waits. No firing is
//! dropped; when `MAX_WAITING` actions wait, the engine waits for room before it starts
//! more (and takes no events meanwhile: the watches' own queues then fill and say so).

mod alertmanager;
mod broker;
pub mod email;
mod environment;
mod job;
mod notify;
pub mod outbox;
mod payload;
mod render;
mod shell;
mod systemd;
mod template;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ActionConfig, ActionKind, Config};
use crate::event::Firing;
pub use job::ShellJob;
use job::Work;
use render::{Failed, Made, Rendering};
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
    /// `[daemon] url`.
    link: Option<String>,
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
            link: config.daemon.url.clone(),
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
        // Without actions nothing is rendered now: the summary waits until a status asks
        // for it (a flood of firings of a rule that only counts costs no template context).
        if firing.actions.is_empty() {
            return Prepared {
                jobs: Vec::new(),
                deliveries: Vec::new(),
                summary: Summary::Later(Box::new(firing)),
            };
        }
        let ctx = template::context(&firing, &self.templates);
        let summary = Summary::Rendered(summary_of(&ctx));
        let mut jobs = Vec::new();
        let mut deliveries = Vec::new();
        for name in &firing.actions {
            let Some(action) = self.actions.get(&**name) else {
                tracing::error!(rule = %firing.rule, action = %name, "no such action");
                continue;
            };
            let r = self.rendering(&firing, &ctx, name);
            match make(&action.kind, &r) {
                Ok(Made::Job(work)) => jobs.push(self.job(&firing, action, work)),
                Ok(Made::Deliveries(d)) => deliveries.extend(d),
                Err(Failed { what, error }) => {
                    tracing::error!(rule = %firing.rule, action = %name, error = %error, "action not run: {what} failed to render");
                }
            }
        }
        Prepared {
            jobs,
            deliveries,
            summary,
        }
    }

    fn rendering<'a>(
        &'a self,
        firing: &'a Firing,
        ctx: &'a template::RenderContext,
        name: &'a str,
    ) -> Rendering<'a> {
        Rendering {
            firing,
            ctx,
            templates: &self.templates,
            name,
            link: self.link.as_deref(),
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

    /// A firing's summary as text, rendered now if it was not when it fired.
    pub fn summary_text(&self, summary: &Summary) -> String {
        match summary {
            Summary::Rendered(s) => s.clone(),
            Summary::Later(firing) => summary_of(&template::context(firing, &self.templates)),
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
            let r = self.rendering(firing, &ctx, name);
            out.push(match preview(&action.kind, &r) {
                Ok(text) => text,
                Err(Failed { what, error }) => format!(
                    "{} `{name}`: {what} fails to render: {error}",
                    kind_name(&action.kind)
                ),
            });
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
    /// The firing's summary (what the status page shows of a firing rule).
    pub summary: Summary,
}

/// A firing's summary: rendered with its actions, or the firing itself, to be rendered
/// when asked (`Dispatcher::summary_text`).
pub enum Summary {
    Rendered(String),
    Later(Box<Firing>),
}

/// The summary a context holds.
fn summary_of(ctx: &template::RenderContext) -> String {
    ctx.json
        .get("summary")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// What a firing makes of an action, by its type.
fn make(kind: &ActionKind, r: &Rendering<'_>) -> Result<Made, Failed> {
    match kind {
        ActionKind::Shell(a) => shell::make(a, r).map(Made::Job),
        ActionKind::Systemd(a) => systemd::make(a, r).map(Made::Job),
        ActionKind::Webhook(a) => webhook::make(a, r),
        ActionKind::Email(a) => email::make(a, r),
        ActionKind::Broker(a) => broker::make(a, r),
        ActionKind::Alertmanager(a) => alertmanager::make(a, r),
        ActionKind::Notify(a) => notify::make(a, r),
    }
}

/// What an action would do for a firing, in words, by its type.
fn preview(kind: &ActionKind, r: &Rendering<'_>) -> Result<String, Failed> {
    match kind {
        ActionKind::Shell(a) => shell::preview(a, r),
        ActionKind::Systemd(a) => systemd::preview(a, r),
        ActionKind::Webhook(a) => webhook::preview(a, r),
        ActionKind::Email(a) => email::preview(a, r),
        ActionKind::Broker(a) => broker::preview(a, r),
        ActionKind::Alertmanager(a) => alertmanager::preview(a, r),
        ActionKind::Notify(a) => notify::preview(a, r),
    }
}

fn kind_name(kind: &ActionKind) -> &'static str {
    match kind {
        ActionKind::Shell(_) => "shell",
        ActionKind::Systemd(_) => "systemd",
        ActionKind::Webhook(_) => "webhook",
        ActionKind::Email(_) => "email",
        ActionKind::Broker(b) => b.protocol.type_name(),
        ActionKind::Alertmanager(_) => "alertmanager",
        ActionKind::Notify(_) => "notify",
    }
}
