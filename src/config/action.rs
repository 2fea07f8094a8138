//! `[action.NAME]`: what a firing runs.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::account::{run_as, Account};
use super::table::deserialize_table;
use super::values;
use super::values::check_env_name;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct ActionConfig {
    pub name: String,
    pub kind: ActionKind,
}

/// The closed set of action types; one struct per type.
#[derive(Debug, Clone)]
pub enum ActionKind {
    Shell(ShellAction),
    Webhook(super::webhook::WebhookAction),
    Alertmanager(super::alertmanager::AlertmanagerAction),
    /// `amqp`, `mqtt` and `nats`.
    Broker(super::broker::BrokerAction),
    /// A unit started, stopped, restarted or reloaded by systemd.
    Systemd(super::systemd::SystemdAction),
    /// A message to an SMTP server.
    Email(super::email::EmailAction),
    /// A message to a chat room or a pager (Slack, Telegram, PagerDuty, ...).
    Notify(super::notify::NotifyAction),
}

const AVAILABLE: &str = "shell, systemd, webhook, alertmanager, email, notify, amqp, mqtt, nats";

#[derive(Debug, Clone)]
pub struct ShellAction {
    pub program: ShellProgram,
    pub timeout: Duration,
    pub user: Option<Account>,
    pub group: Option<Account>,
    pub cwd: Option<PathBuf>,
    /// Extra environment variables; values are templates.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum ShellProgram {
    /// `command = [...]`: each element a template; no shell is involved.
    Argv(Vec<String>),
    /// `shell = "..."`: run by `/bin/sh -c`; values reach it only as `HARK_*` variables.
    Script(String),
}

pub const DEFAULT_SHELL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShell {
    command: Option<Spanned<Vec<Spanned<String>>>>,
    shell: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    cwd: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// The template environment every template is checked and rendered with: undefined
/// values (a field an event lacks) render empty instead of failing the action. Each
/// render has a budget (`TEMPLATE_FUEL`): templates run on the engine's thread, and a
/// loop of loops must fail its action, not stop every watch.
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

/// The work one render may do: about one unit per instruction and per 64 bytes of data
/// it makes, so at most about 100,000 steps or 6 MB (a few milliseconds). Rendering an
/// event with a capped HTTP body, or a loop over its fields, uses a few hundred.
pub const TEMPLATE_FUEL: u64 = 100_000;

/// The longest text a template may render (a payload, an argument, a summary).
pub const TEMPLATE_MAX_OUTPUT: usize = 1024 * 1024;

pub(crate) fn parse(
    ctx: &mut Ctx,
    name: &str,
    mut table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<ActionConfig> {
    let Some((_, type_value)) = table.remove_entry("type") else {
        ctx.error(
            span,
            format!("action `{name}` has no `type` (one of: {AVAILABLE})"),
        );
        return None;
    };
    let DeValue::String(ty) = type_value.get_ref() else {
        ctx.error(type_value.span(), "`type` must be a string");
        return None;
    };
    let kind = match ty.as_ref() {
        "shell" => ActionKind::Shell(parse_shell(ctx, table, span, templates)?),
        "webhook" => ActionKind::Webhook(super::webhook::parse(ctx, table, span, templates)?),
        "alertmanager" => {
            ActionKind::Alertmanager(super::alertmanager::parse(ctx, table, span, templates)?)
        }
        "systemd" => ActionKind::Systemd(super::systemd::parse(ctx, table, span, templates)?),
        "email" => ActionKind::Email(super::email::parse(ctx, table, span, templates)?),
        "notify" => ActionKind::Notify(super::notify::parse(ctx, table, span, templates)?),
        t @ ("amqp" | "mqtt" | "nats") => {
            ActionKind::Broker(super::broker::parse(ctx, t, table, span, templates)?)
        }
        t => {
            ctx.error(
                type_value.span(),
                format!("unknown action type `{t}` (expected one of: {AVAILABLE})"),
            );
            return None;
        }
    };
    Some(ActionConfig {
        name: name.to_string(),
        kind,
    })
}

fn parse_shell(
    ctx: &mut Ctx,
    table: DeTable<'_>,
    span: Range<usize>,
    templates: &minijinja::Environment<'static>,
) -> Option<ShellAction> {
    let raw: RawShell = deserialize_table(ctx, table, span.clone())?;
    let before = ctx.errors.len();
    let program = match (&raw.command, &raw.shell) {
        (Some(argv), None) => {
            if argv.get_ref().is_empty() {
                ctx.error(
                    argv.span(),
                    "`command` is empty: give the program and its arguments",
                );
            }
            for arg in argv.get_ref() {
                values::template(ctx, templates, arg);
            }
            ShellProgram::Argv(argv.get_ref().iter().map(|a| a.get_ref().clone()).collect())
        }
        (None, Some(script)) => {
            if let Some(i) = script.get_ref().find("{{") {
                // Interpolating values into a script is how injection happens; values reach
                // the script only as environment variables.
                ctx.error_inside_string(
                    script.span(),
                    i,
                    "templates are not expanded in `shell` (values would be injected into the script); \
                     use the environment instead, e.g. \"$HARK_PATH\", or the argv form `command = [...]`"
                        .to_string(),
                );
            }
            ShellProgram::Script(script.get_ref().clone())
        }
        (Some(argv), Some(_)) => {
            ctx.error(
                argv.span(),
                "give either `command` (argv) or `shell` (a script), not both",
            );
            return None;
        }
        (None, None) => {
            if !ctx.taken_out.iter().any(|k| k == "command" || k == "shell") {
                ctx.error(
                    span,
                    "a shell action needs `command = [...]` (argv) or `shell = \"...\"` (a script)",
                );
            }
            return None;
        }
    };
    let timeout = values::positive_duration(ctx, &raw.timeout, "timeout", DEFAULT_SHELL_TIMEOUT);
    let (user, group, cwd) = run_as(ctx, &raw.user, &raw.group, &raw.cwd);
    let mut env = BTreeMap::new();
    for (k, v) in &raw.env {
        check_env_name(ctx, k);
        values::template(ctx, templates, v);
        env.insert(k.get_ref().clone(), v.get_ref().clone());
    }
    if ctx.errors.len() != before {
        return None;
    }
    Some(ShellAction {
        program,
        timeout,
        user,
        group,
        cwd,
        env,
    })
}
