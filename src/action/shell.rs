//! The `shell` action: a program run with argv (no shell), or a script run by `/bin/sh -c`
//! whose values arrive only as `HARK_*` environment variables. Each run is the leader of
//! its own process group, so a timeout kills everything it started.

use std::ffi::OsString;

use tokio_util::sync::CancellationToken;

use crate::config::{ShellAction, ShellProgram};
use crate::exec::{self, Spec};
pub use crate::exec::{Finish, Report};

/// A shell action with its templates rendered, ready to start.
#[derive(Debug)]
pub struct Prepared {
    pub argv: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
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
            user: action.user.as_ref(),
            group: action.group.as_ref(),
            cwd: action.cwd.as_ref(),
            timeout: action.timeout,
        },
        stop,
    )
    .await
}
