//! `command` watches: a program run on an interval with the safety of shell actions (its
//! own process group, killed whole at the timeout; the environment cleared; output capped),
//! its exit code read as a Nagios plugin's state, so Debian's `monitoring-plugins` work
//! as they are.

use std::ffi::OsString;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::periodic::{self, millis, PeriodicHandle};
use crate::config::CommandWatch;
use crate::exec::{self, Finish, Spec};

pub fn start(
    to: super::Emitter,
    config: CommandWatch,
    clock: super::clock::Clock,
) -> PeriodicHandle {
    let every = config.every;
    periodic::spawn_checks(
        to,
        periodic::Schedule { every, clock },
        config,
        |c, stop| async move { check(&c, &stop).await },
    )
}

/// The Nagios plugin state of an exit code.
pub fn nagios_status(code: i32) -> &'static str {
    match code {
        0 => "ok",
        1 => "warning",
        2 => "critical",
        _ => "unknown",
    }
}

/// Runs the command once; `stop` kills it (and its group) when the watch stops.
pub async fn check(config: &CommandWatch, stop: &CancellationToken) -> Map<String, Value> {
    let spec = Spec {
        argv: config.argv.iter().map(OsString::from).collect(),
        env: config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), OsString::from(v)))
            .collect(),
        event: None,
        user: config.user.as_ref(),
        group: config.group.as_ref(),
        cwd: config.cwd.as_ref(),
        timeout: config.timeout,
    };
    let mut f = Map::new();
    match exec::run(spec, stop).await {
        Ok(report) => {
            let (code, status, error) = match report.finish {
                Finish::Exited(c) => (Value::from(c), nagios_status(c), String::new()),
                Finish::Signalled(s) => {
                    (Value::from(-1), "unknown", format!("killed by signal {s}"))
                }
                // As Nagios does with a plugin that hangs.
                Finish::TimedOut => (
                    Value::from(-1),
                    "critical",
                    format!(
                        "timed out after {}; its process group was killed",
                        humantime::format_duration(config.timeout)
                    ),
                ),
                Finish::Killed => (Value::from(-1), "unknown", "hark is stopping".to_string()),
            };
            let stdout = String::from_utf8_lossy(&report.stdout).into_owned();
            // A plugin's first line is its status text; performance data follows a `|`.
            let output = stdout
                .lines()
                .next()
                .unwrap_or("")
                .split('|')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            f.insert("exit_code".into(), code);
            f.insert("status".into(), Value::from(status));
            f.insert("output".into(), Value::from(output));
            f.insert("stdout".into(), Value::from(stdout));
            f.insert(
                "stderr".into(),
                Value::from(String::from_utf8_lossy(&report.stderr).into_owned()),
            );
            f.insert("duration_ms".into(), Value::from(millis(report.duration)));
            f.insert("error".into(), Value::from(error));
        }
        Err(e) => {
            f.insert("exit_code".into(), Value::from(-1));
            f.insert("status".into(), Value::from("unknown"));
            f.insert("output".into(), Value::from(""));
            f.insert("stdout".into(), Value::from(""));
            f.insert("stderr".into(), Value::from(""));
            f.insert("duration_ms".into(), Value::from(0.0));
            f.insert("error".into(), Value::from(format!("cannot start: {e}")));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_codes_read_as_nagios_states() {
        let got: Vec<_> = [0, 1, 2, 3, 4, -1].map(super::nagios_status).to_vec();
        assert_eq!(
            got,
            ["ok", "warning", "critical", "unknown", "unknown", "unknown"]
        );
    }
}
