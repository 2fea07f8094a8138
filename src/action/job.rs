//! A local action's run: a shell command or a systemd job, in its turn for a slot; its
//! outcome logged, counted and traced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{shell, systemd, Slots};
use crate::config::{ActionConfig, ActionKind};
use crate::event::human_duration;
use crate::trace::{self, Kind, Line};

/// A local action (shell or systemd) ready to start; both take their turn in the slots.
pub struct ShellJob {
    pub(super) rule: Arc<str>,
    /// For the trace only (`hark tail --watch`).
    pub(super) watch: Arc<str>,
    pub(super) queued: Instant,
    pub(super) action: Arc<ActionConfig>,
    pub(super) work: Work,
    pub(super) slots: Slots,
    pub(super) kill: CancellationToken,
}

/// What a local action runs, rendered.
pub(super) enum Work {
    Shell(shell::Prepared),
    /// The unit's name.
    Systemd(String),
}

/// Counts a job as waiting until it is dropped or marked running, and as running until
/// it is dropped.
struct Turn<'a> {
    slots: &'a Slots,
    running: bool,
}

impl Turn<'_> {
    fn run(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.slots.waiting.fetch_sub(1, Relaxed);
        self.slots.running.fetch_add(1, Relaxed);
        self.running = true;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.running {
            self.slots.running.fetch_sub(1, Relaxed);
        } else {
            self.slots.waiting.fetch_sub(1, Relaxed);
        }
    }
}

impl ShellJob {
    pub(super) async fn run(self) {
        let name = &self.action.name;
        let mut turn = Turn {
            slots: &self.slots,
            running: false,
        };
        let _permit = tokio::select! {
            p = Arc::clone(&self.slots.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = self.kill.cancelled() => {
                tracing::error!(rule = %self.rule, action = %name, "action not run: hark stopped before it could start");
                return;
            }
        };
        turn.run();
        let waited = self.queued.elapsed();
        crate::metrics::get().observe_wait(name, waited);
        let line = |what: &str, text: String| {
            Line::new(Kind::Action, what, text)
                .watch(&self.watch)
                .rule(&self.rule)
                .action(name)
        };
        trace::publish(
            line(
                "started",
                format!("started (waited {} for a slot)", human_duration(waited)),
            )
            .took(waited),
        );
        let (shell, prepared) = match (&self.action.kind, self.work) {
            (ActionKind::Shell(shell), Work::Shell(prepared)) => (shell, prepared),
            (ActionKind::Systemd(sd), Work::Systemd(unit)) => {
                tracing::debug!(rule = %self.rule, action = %name, unit = %unit, verb = sd.verb.as_str(), "action started");
                let outcome = systemd::run(&unit, sd.verb, sd.timeout, &self.kill).await;
                trace::publish(systemd_report(&self.rule, name, sd, &unit, outcome, line));
                return;
            }
            _ => return,
        };
        let argv: Vec<String> = prepared
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        tracing::debug!(rule = %self.rule, action = %name, argv = ?argv, "action started");
        match shell::run(shell, prepared, &self.kill).await {
            Ok(report) => {
                log_report(&self.rule, name, &report);
                let took = human_duration(report.duration);
                let (what, text) = match report.finish {
                    shell::Finish::Exited(c) => ("exited", format!("exited {c} after {took}")),
                    shell::Finish::Signalled(sig) => {
                        ("signalled", format!("killed by signal {sig} after {took}"))
                    }
                    shell::Finish::TimedOut => (
                        "timed_out",
                        format!("timed out after {took}; its process group was killed"),
                    ),
                    shell::Finish::Killed => (
                        "killed",
                        "killed: hark is stopping and the grace period is over".to_string(),
                    ),
                };
                let mut l = line(what, text).took(report.duration);
                if let shell::Finish::Exited(c) = report.finish {
                    l.exit_code = Some(c);
                }
                trace::publish(l);
            }
            Err(e) => {
                crate::metrics::get().observe_action(name, "error", Duration::ZERO);
                tracing::error!(rule = %self.rule, action = %name, error = %e, argv = ?argv, "action failed to start");
                trace::publish(line("error", format!("failed to start: {e}")));
            }
        }
    }
}

/// A systemd action's outcome, logged and counted like a shell action's exit status; its
/// trace line.
fn systemd_report(
    rule: &str,
    action: &str,
    sd: &crate::config::SystemdAction,
    unit: &str,
    outcome: Result<systemd::Outcome, String>,
    line: impl Fn(&str, String) -> Line,
) -> Line {
    let verb = sd.verb.as_str();
    match outcome {
        Ok(o) => {
            let ms = o.duration.as_millis() as u64;
            let took = human_duration(o.duration);
            crate::metrics::get().observe_action(
                action,
                if o.ok() { "ok" } else { "failed" },
                o.duration,
            );
            if o.ok() {
                tracing::info!(rule, action, unit, verb, result = %o.result, duration_ms = ms, "action finished");
            } else {
                tracing::warn!(rule, action, unit, verb, result = %o.result, duration_ms = ms, "action failed");
            }
            let text = match o.result.as_str() {
                "timed_out" => format!(
                    "{verb} {unit}: no end of the job within {}; hark stopped waiting",
                    humantime::format_duration(sd.timeout)
                ),
                "killed" => format!("{verb} {unit}: hark is stopping; it stopped waiting"),
                r => format!("{verb} {unit}: job {r} after {took}"),
            };
            line(&o.result, text).took(o.duration)
        }
        Err(e) => {
            crate::metrics::get().observe_action(action, "error", Duration::ZERO);
            tracing::error!(rule, action, unit, verb, error = %e, "action failed to start");
            line("error", format!("{verb} {unit}: {e}"))
        }
    }
}

fn log_report(rule: &str, action: &str, r: &shell::Report) {
    let ms = r.duration.as_millis() as u64;
    let result = match r.finish {
        shell::Finish::Exited(0) => "ok",
        shell::Finish::Exited(_) => "failed",
        shell::Finish::Signalled(_) => "signalled",
        shell::Finish::TimedOut => "timeout",
        shell::Finish::Killed => "killed",
    };
    crate::metrics::get().observe_action(action, result, r.duration);
    // Output is logged escaped (Debug): a newline or escape sequence in it cannot forge a log line.
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    match r.finish {
        shell::Finish::Exited(0) => {
            tracing::info!(rule, action, exit_code = 0, duration_ms = ms, stdout = ?stdout, stderr = ?stderr, "action finished")
        }
        shell::Finish::Exited(code) => {
            tracing::warn!(rule, action, exit_code = code, duration_ms = ms, stdout = ?stdout, stderr = ?stderr, "action failed")
        }
        shell::Finish::Signalled(sig) => {
            tracing::warn!(rule, action, signal = sig, duration_ms = ms, stdout = ?stdout, stderr = ?stderr, "action killed by a signal")
        }
        shell::Finish::TimedOut => {
            tracing::warn!(rule, action, duration_ms = ms, stdout = ?stdout, stderr = ?stderr, "action timed out; its process group was killed")
        }
        shell::Finish::Killed => {
            tracing::warn!(
                rule,
                action,
                duration_ms = ms,
                "action killed: hark is stopping and the grace period is over"
            )
        }
    }
}
