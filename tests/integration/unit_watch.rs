//! The `unit` watch and the `systemd` action against a real systemd (inside
//! tests/systemd/sandbox): a unit that fails fires with its `result` and resolves when it
//! is active again; a `Restart=on-failure` unit shows `n_restarts` rising; the `systemd`
//! action restarts a unit and reports the job's result, and a start that fails reports
//! failure; a unit added by `daemon-reload` is watched; after `daemon-reexec` no failure
//! is missed; the bus restarted is an event of the watch, and what fails after it is seen.

use std::time::Duration;

use crate::systemd::Sandbox;
use crate::util::*;

const CONFIG: &str = r#"
[watch.units]
type = "unit"
units = ["sleeper.service", "flaky.service", "restarty.service", "late-*.service", "missing.service"]

[rule.failed]
watch = "units"
when = 'active_state == "failed"'
then = ["rec"]
resolve = ["rec"]

[rule.restarting]
watch = "units"
when = 'unit == "restarty.service" && n_restarts >= 2'
then = ["rec"]

[rule.bus_lost]
watch = "units"
when = 'kind == "disconnected"'
then = ["rec"]

[rule.fix_sleeper]
watch = "units"
when = 'unit == "sleeper.service" && active_state == "failed"'
then = ["restart_it"]

[rule.flaky_failed]
watch = "units"
when = 'unit == "flaky.service" && active_state == "failed"'
then = ["start_broken"]

[action.rec]
type = "shell"
command = ["/bin/sh", "-c", 'echo "$1 $2 $3 $4" >> /var/lib/hark/fired', "rec", "{{ rule }}", "{{ state }}", "{{ event.unit }}", "{{ event.result }}"]

[action.restart_it]
type = "systemd"
unit = "{{ event.unit }}"
verb = "restart"
timeout = "20s"

[action.start_broken]
type = "systemd"
unit = "broken.service"
verb = "start"
"#;

fn unit(s: &Sandbox, name: &str, service: &str) {
    s.write(
        &format!("/etc/systemd/system/{name}"),
        &format!("[Service]\n{service}\n"),
    );
}

fn fired(s: &Sandbox) -> Vec<String> {
    let (_, text) = s.run(&["cat", "/var/lib/hark/fired"]);
    text.lines()
        .filter(|l| !l.starts_with("cat:"))
        .map(str::to_string)
        .collect()
}

fn wait_line(s: &Sandbox, line: &str) -> bool {
    wait_for(Duration::from_secs(30), || {
        fired(s).iter().any(|l| l == line)
    })
}

/// hark's journal with every field (an action's `RESULT`, `UNIT`).
fn fields(s: &Sandbox) -> String {
    s.run(&["journalctl", "-u", "hark", "--no-pager", "-o", "verbose"])
        .1
}

fn journal(s: &Sandbox) -> String {
    s.run(&["journalctl", "-u", "hark", "--no-pager", "-o", "cat"])
        .1
}

#[test]
fn units_fail_restart_and_are_restarted_over_dbus() {
    let s = Sandbox::up();
    s.copy(std::path::Path::new(HARK), "/usr/bin/hark");
    // Under the packaged unit and its sandbox: the system bus must be reachable from it,
    // and systemd must take hark's requests.
    s.copy(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hark.service"),
        "/etc/systemd/system/hark.service",
    );
    unit(&s, "sleeper.service", "ExecStart=/bin/sleep 1000");
    unit(&s, "flaky.service", "ExecStart=/bin/sh -c 'exit 3'");
    unit(
        &s,
        "restarty.service",
        "ExecStart=/bin/sh -c 'sleep 0.3; exit 1'\nRestart=on-failure\nRestartSec=200ms",
    );
    // Type=exec: the start job waits for the exec, which fails, so the job fails.
    unit(
        &s,
        "broken.service",
        "Type=exec\nExecStart=/nonexistent/program",
    );
    s.ok(&["systemctl", "daemon-reload"]);
    s.ok(&["systemctl", "start", "sleeper.service"]);
    s.write("/etc/hark/hark.toml", CONFIG);

    s.ok(&["systemctl", "daemon-reload"]);
    s.ok(&["systemctl", "start", "hark"]);

    // A unit that exits 3: fires with its result; the action that starts a unit whose
    // start fails reports the job's failure.
    let _ = s.run(&["systemctl", "start", "flaky.service"]);
    assert!(
        wait_line(&s, "failed firing flaky.service exit-code"),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    assert!(
        wait_for(Duration::from_secs(20), || {
            let j = fields(&s);
            j.contains("RESULT=failed") && j.contains("UNIT=broken.service")
        }),
        "{}",
        fields(&s)
    );
    let status = s.ok(&["hark", "status"]);
    assert!(status.contains("units"), "{status}");

    // Restart=on-failure: n_restarts rises to 2 and the rule fires.
    s.ok(&["systemctl", "start", "--no-block", "restarty.service"]);
    // Between two runs it is `activating`/`auto-restart`, never `failed` (systemd passes
    // through `failed` and says so; hark does not report that): while it restarts, the
    // `failed` rule stays quiet.
    assert!(
        wait_for(Duration::from_secs(30), || fired(&s)
            .iter()
            .any(|l| l.starts_with("restarting firing restarty.service"))),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    s.ok(&["systemctl", "stop", "restarty.service"]);
    assert!(
        !fired(&s)
            .iter()
            .any(|l| l.starts_with("failed firing restarty.service")),
        "{:?}",
        fired(&s)
    );

    // The main process SIGKILLed: fires with result `signal`, hark restarts the unit over
    // D-Bus (job done), and the unit, active again, resolves.
    let pid_before = s
        .ok(&[
            "systemctl",
            "show",
            "sleeper.service",
            "-p",
            "MainPID",
            "--value",
        ])
        .trim()
        .to_string();
    s.ok(&["systemctl", "kill", "-s", "KILL", "sleeper.service"]);
    assert!(
        wait_line(&s, "failed firing sleeper.service signal"),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    assert!(
        wait_line(&s, "failed resolved sleeper.service success"),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    let pid_after = s
        .ok(&[
            "systemctl",
            "show",
            "sleeper.service",
            "-p",
            "MainPID",
            "--value",
        ])
        .trim()
        .to_string();
    assert_ne!(pid_before, pid_after);
    assert_ne!(pid_after, "0");
    let f = fields(&s);
    assert!(
        f.contains("RESULT=done") && f.contains("UNIT=sleeper.service"),
        "{f}"
    );
    // The job's result is the action's outcome in `hark explain`, as an exit status is.
    let explain = s.ok(&["hark", "explain", "fix_sleeper"]);
    assert!(
        explain.contains("restart sleeper.service: job done"),
        "{explain}"
    );

    // A unit added by daemon-reload after hark started is watched.
    unit(&s, "late-one.service", "ExecStart=/bin/sh -c 'exit 4'");
    s.ok(&["systemctl", "daemon-reload"]);
    let _ = s.run(&["systemctl", "start", "late-one.service"]);
    assert!(
        wait_line(&s, "failed firing late-one.service exit-code"),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );

    // systemd re-executes: hark follows it again and misses no failure after it; the
    // units it passes through other states while it deserializes them (late-one, failed
    // throughout) neither resolve nor fire again.
    s.ok(&["systemctl", "daemon-reexec"]);
    std::thread::sleep(Duration::from_secs(3));
    let late: Vec<String> = fired(&s)
        .into_iter()
        .filter(|l| l.contains("late-one"))
        .collect();
    assert_eq!(
        late,
        ["failed firing late-one.service exit-code"],
        "{}",
        journal(&s)
    );
    let _ = s.run(&["systemctl", "reset-failed", "flaky.service"]);
    assert!(
        wait_line(&s, "failed resolved flaky.service success"),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    let _ = s.run(&["systemctl", "start", "flaky.service"]);
    let firings = |s: &Sandbox| {
        fired(s)
            .iter()
            .filter(|l| *l == "failed firing flaky.service exit-code")
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(30), || firings(&s) == 2),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    // A unit named that does not exist is a sample (`not-found`), not an error.
    let status = s.ok(&["hark", "status"]);
    assert!(!status.contains("system bus"), "{status}");

    // The bus restarted: an event of the watch, hark connects again, and a failure after
    // it fires and is restarted over D-Bus (the systemd action's connection renewed).
    s.ok(&["systemctl", "restart", "dbus"]);
    assert!(
        wait_for(Duration::from_secs(30), || fired(&s)
            .iter()
            .any(|l| l.starts_with("bus_lost firing"))),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    std::thread::sleep(Duration::from_secs(3));
    let sleeper_failures = |s: &Sandbox| {
        fired(s)
            .iter()
            .filter(|l| *l == "failed firing sleeper.service signal")
            .count()
    };
    s.ok(&["systemctl", "kill", "-s", "KILL", "sleeper.service"]);
    assert!(
        wait_for(Duration::from_secs(30), || sleeper_failures(&s) == 2),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
    assert!(
        wait_for(Duration::from_secs(30), || fired(&s)
            .iter()
            .filter(|l| *l == "failed resolved sleeper.service success")
            .count()
            == 2),
        "{:?}\n{}",
        fired(&s),
        journal(&s)
    );
}
