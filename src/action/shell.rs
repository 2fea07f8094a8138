//! The `shell` action: a program run with argv (no shell), or a script run by `/bin/sh -c`
//! whose values arrive only as `HARK_*` environment variables. Each run is the leader of
//! its own process group, so a timeout kills everything it started.

use std::ffi::OsString;

use tokio_util::sync::CancellationToken;

use super::environment::{self, without_nul};
use super::job::Work;
use super::render::{Failed, Rendering};
use super::template::{self, Templates};
use crate::config::{ShellAction, ShellProgram};
use crate::event::{decode_os, Firing};
use crate::exec::{self, Spec};
pub use crate::exec::{Finish, Report};

/// A shell action with its templates rendered, ready to start.
#[derive(Debug)]
pub struct Prepared {
    pub argv: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
    /// The whole event as JSON, given to the process as the file `HARK_EVENT_FILE`.
    pub event: Vec<u8>,
}

pub fn argv_for(action: &ShellAction, rendered_argv: Vec<OsString>) -> Vec<OsString> {
    match &action.program {
        ShellProgram::Argv(_) => rendered_argv,
        ShellProgram::Script(script) => vec!["/bin/sh".into(), "-c".into(), script.into()],
    }
}

/// Runs the action in its own process group (see `exec::run`).
pub async fn run(
    action: &ShellAction,
    prepared: Prepared,
    stop: &CancellationToken,
) -> std::io::Result<Report> {
    exec::run(
        Spec {
            argv: prepared.argv,
            env: prepared.env,
            event: Some(prepared.event),
            user: action.user.as_ref(),
            group: action.group.as_ref(),
            cwd: action.cwd.as_ref(),
            timeout: action.timeout,
        },
        stop,
    )
    .await
}

/// Renders the action's argv and environment for `firing`. Every value is held below
/// what `execve` takes (see `environment`): a field of any size never keeps the action
/// from starting; the whole event goes to the process as `HARK_EVENT_FILE`.
pub fn prepare(
    shell: &ShellAction,
    firing: &Firing,
    ctx: &template::RenderContext,
    templates: &Templates,
) -> Result<Prepared, minijinja::Error> {
    let mut argv = Vec::new();
    let mut cut = 0;
    if let ShellProgram::Argv(args) = &shell.program {
        for a in args {
            let arg = without_nul(decode_os(&templates.render(a, ctx)?));
            if arg.len() > environment::ARG_MAX {
                cut += 1;
                argv.push(environment::cut_to(&arg, environment::ARG_MAX));
            } else {
                argv.push(arg);
            }
        }
    }
    let mut env = environment::hark_env(firing, ctx);
    for (k, v) in &shell.env {
        env.push((
            k.clone(),
            without_nul(decode_os(&templates.render(v, ctx)?)),
        ));
    }
    cut += environment::fit(&mut env);
    if cut > 0 {
        tracing::warn!(rule = %firing.rule, cut, "values too large for a process's arguments or environment were cut (marked \"…[hark cut N bytes]\"); the whole event is in HARK_EVENT_FILE");
    }
    let event = crate::event::event_json_lossy(&firing.event.to_json()).to_string();
    Ok(Prepared {
        argv: argv_for(shell, argv),
        env,
        event: event.into_bytes(),
    })
}

/// What a firing makes of the action: its program and environment, rendered.
pub(super) fn make(shell: &ShellAction, r: &Rendering<'_>) -> Result<Work, Failed> {
    prepare(shell, r.firing, r.ctx, r.templates)
        .map(Work::Shell)
        .map_err(Failed::of("a template"))
}

/// What it would run, for `hark test`.
pub(super) fn preview(shell: &ShellAction, r: &Rendering<'_>) -> Result<String, Failed> {
    let p = prepare(shell, r.firing, r.ctx, r.templates).map_err(Failed::of("a template"))?;
    let argv: Vec<String> = p
        .argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut out = format!("shell `{}`: {argv:?}", r.name);
    if let ShellProgram::Script(_) = shell.program {
        let summary = r.ctx.json.get("summary").and_then(|s| s.as_str());
        out.push_str(&format!(
            "\n    with HARK_* variables, e.g. HARK_SUMMARY={:?}",
            summary.unwrap_or("")
        ));
    }
    Ok(out)
}
