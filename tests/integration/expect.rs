//! Rules that see what did not happen: `expect_within` over a file, `expect` (cron) over a
//! log, heartbeat groups, `hark ping` wrapping a job, restarts inside and after windows,
//! and a DST day in three zones on a wall clock started for the test.

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

/// Appends a line to `path`.
fn append(path: &std::path::Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// Records of `h`'s action that are exactly `what`.
fn count(h: &Hark, what: &str) -> usize {
    h.lines().iter().filter(|l| *l == what).count()
}

#[test]
fn a_file_not_modified_within_its_window_fires_once_resolves_on_the_next_modify_and_keeps_its_window_across_restarts(
) {
    let dir = tempdir();
    std::fs::write(dir.path().join("backup.tar"), "v1").unwrap();
    let config = recorded(
        "type = \"file\"\npaths = [\"@DIR@/backup.tar\"]",
        "when = \"kind == 'modify'\"\nexpect_within = \"3s\"\nresolve = [\"rec\"]",
        &["{{ state }} {{ event.kind }}"],
    );
    let mut h = Start::new(&config).dir(dir).run();
    let modify = |h: &Hark| std::fs::write(h.path("backup.tar"), "v2").unwrap();
    modify(&h);
    // Modified within the window, twice: nothing fires.
    std::thread::sleep(Duration::from_secs(2));
    modify(&h);
    std::thread::sleep(Duration::from_secs(2));
    assert!(h.lines().is_empty(), "{:?}\n{}", h.lines(), h.log());
    // Quiet for 3 s: it fires, once.
    let lines = h.wait_lines(1);
    assert_eq!(lines, ["firing missed"], "{}", h.log());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(h.lines().len(), 1, "fired once, not again: {:?}", h.lines());
    modify(&h);
    assert_eq!(h.wait_lines(2)[1], "resolved modify");

    // SIGTERM inside a window: the restart neither fires early nor forgets the window.
    let began = Instant::now();
    h.restart();
    assert!(wait_for(Duration::from_secs(10), || h.lines().len() >= 3));
    let waited = began.elapsed();
    assert_eq!(h.lines()[2], "firing missed");
    assert!(
        waited > Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "the window ran from the last modify, not from the restart: {waited:?}"
    );
    // SIGKILL while firing: no firing repeated.
    h.kill_and_restart();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&h, "firing missed"), 2, "{:?}", h.lines());
    modify(&h);
    assert_eq!(h.wait_lines(4)[3], "resolved modify");
}

#[test]
fn a_log_line_missing_from_a_cron_window_fires_after_the_grace() {
    let dir = tempdir();
    std::fs::write(dir.path().join("app.log"), "").unwrap();
    let config = recorded(
        "type = \"log\"\npaths = [\"@DIR@/app.log\"]",
        // Every 3 seconds (a sixth field in front: seconds), a second of grace.
        "when = \"line.contains('caught up')\"\nexpect = \"*/3 * * * * *\"\ngrace = \"1s\"\n\
         timezone = \"UTC\"\nresolve = [\"rec\"]",
        &["{{ state }}"],
    );
    let mut h = Start::new(&config).dir(dir).run();
    let log = h.path("app.log");
    for _ in 0..8 {
        append(&log, "replica caught up");
        append(&log, "noise");
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(h.lines().is_empty(), "kept on time: {:?}", h.lines());
    // Lines that are not matches keep coming; the match stops.
    for _ in 0..8 {
        append(&log, "noise");
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(h.wait_lines(1), ["firing"], "{}", h.log());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(h.lines(), ["firing"], "once");
    append(&log, "replica caught up");
    assert_eq!(h.wait_lines(2), ["firing", "resolved"]);
    let (_, explain, _) = h.ctl(&["explain", "r"]);
    assert!(explain.contains("a match is due by"), "{explain}");
    assert!(
        explain.contains("expects a match after each time of \"*/3 * * * * *\" in UTC"),
        "{explain}"
    );
    assert!(explain.contains("UTC (in "), "due in the zone: {explain}");

    // Down across a deadline (SIGTERM, 5 s: a scheduled time and its grace pass): it fires
    // once, at the start.
    append(&log, "replica caught up");
    // Read before the stop (a line read only after the restart would be a match then).
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    h.restart_after(Duration::from_secs(5));
    assert_eq!(h.wait_lines(3)[2], "firing", "{}", h.log());
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "fired at the start, not a schedule later: {:?}",
        began.elapsed()
    );
    // SIGKILL while firing: no firing repeated, through two more scheduled times.
    h.kill_and_restart();
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(count(&h, "firing"), 2, "{:?}", h.lines());
    append(&log, "replica caught up");
    assert_eq!(h.wait_lines(4)[3], "resolved", "{}", h.log());
}

/// Two heartbeat watches, one rule grouped by watch: `hark ping` keeps each alive.
const FLEET: &str = r#"
[watch.web1]
type = "heartbeat"

[watch.web2]
type = "heartbeat"

[rule.alive]
watch = ["web1", "web2"]
when = "kind == 'success'"
expect_within = "4s"
group_by = ["watch"]
then = ["rec"]
resolve = ["rec"]

[action.rec]
type = "shell"
command = @REC@
"#;

#[test]
fn a_heartbeat_group_that_goes_quiet_fires_for_that_group_only_and_once_across_a_sigkill() {
    let config = FLEET.replace(
        "@REC@",
        &recorder_argv("@DIR@/out", &["{{ state }} {{ group.watch }}"]),
    );
    let mut h = start(&config);
    let ping = |h: &Hark, name: &str| {
        let (code, _, err) = h.ctl(&["ping", name]);
        assert_eq!(code, Some(0), "{err}");
    };
    for _ in 0..6 {
        ping(&h, "web1");
        ping(&h, "web2");
        std::thread::sleep(Duration::from_millis(500));
    }
    // web2 goes quiet.
    for _ in 0..12 {
        ping(&h, "web1");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(h.lines(), ["firing web2"], "{}", h.log());
    let status = h.status();
    let rows: Vec<_> = status["rules"].as_array().unwrap().iter().collect();
    assert!(
        rows.iter()
            .any(|r| r["group"]["watch"] == "web1" && r["expected_by"].is_string()),
        "{status}"
    );
    // SIGKILL while web2 fires: no firing repeated; its next ping resolves it.
    h.kill_and_restart();
    ping(&h, "web1");
    std::thread::sleep(Duration::from_secs(2));
    ping(&h, "web2");
    assert_eq!(
        h.wait_lines(2),
        ["firing web2", "resolved web2"],
        "{}",
        h.log()
    );
    // An unknown name: exit 1, naming the heartbeat watches.
    let (code, _, err) = h.ctl(&["ping", "web3"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("web1, web2"), "{err}");
}

#[test]
fn hark_ping_wraps_a_job_its_status_duration_and_output_go_with_its_end() {
    let config = recorded(
        "type = \"heartbeat\"",
        "",
        &["{{ event.kind }} {{ event.exit_code }} {{ event.output | trim }}"],
    );
    let h = start(&config);
    let socket = h.path("control.sock");
    let out = Command::new(HARK)
        .args(["ping", "w", "--socket"])
        .arg(&socket)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "the job's status is hark's");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
    let lines = h.wait_lines(2);
    assert!(lines[0].starts_with("start "), "{lines:?}");
    assert!(lines[1].starts_with("fail 3 "), "{lines:?}");
    assert!(
        lines[1].contains("to-out") && lines[1].contains("to-err"),
        "{lines:?}"
    );
    // A job that cannot be started: the fail event, exit 127, nothing hangs.
    let began = Instant::now();
    let out = Command::new(HARK)
        .args(["ping", "w", "--socket"])
        .arg(&socket)
        .args(["--", "/nonexistent/job"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(began.elapsed() < Duration::from_secs(10));
    let lines = h.wait_lines(4);
    assert!(lines[3].starts_with("fail 127"), "{lines:?}");
    // No daemon: the job still runs, its status is still hark's.
    let out = Command::new(HARK)
        .args(["ping", "w", "--socket", "/nonexistent/control.sock"])
        .args(["--", "/bin/sh", "-c", "exit 0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// Heartbeat watches `berlin`, `london` and `newyork`, a rule each expecting a match
/// after the local time `at` on a schedule with 5 s of grace.
fn dst_config(rules: &[(&str, &str, &str)]) -> String {
    let mut c = String::new();
    for (name, zone, at) in rules {
        c.push_str(&format!(
            "[watch.{name}]\ntype = \"heartbeat\"\n\n[rule.{name}]\nwatch = \"{name}\"\n\
             expect = \"{at}\"\ngrace = \"5s\"\ntimezone = \"{zone}\"\nthen = [\"rec\"]\n\n"
        ));
    }
    c.push_str(&format!(
        "[action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv("@DIR@/out", &["{{ rule }} {{ state }}"])
    ));
    c
}

fn started_at(clock: &'static str) -> fn(&mut Command) {
    match clock {
        "europe" => |c: &mut Command| {
            c.env("HARK_CLOCK_START", "2026-03-29T00:59:50Z");
        },
        _ => |c: &mut Command| {
            c.env("HARK_CLOCK_START", "2026-03-08T06:59:50Z");
        },
    }
}

#[test]
fn a_job_in_the_spring_forward_gap_is_expected_once_in_each_zone() {
    // 2026-03-29 01:00 UTC: Berlin goes from 02:00 CET to 03:00 CEST, London from 01:00
    // GMT to 02:00 BST: 02:30 in Berlin and 01:30 in London do not exist that day; each is
    // due at the first instant after the gap (01:00 UTC), plus the grace.
    let began = Instant::now();
    let europe = Start::new(&dst_config(&[
        ("berlin", "Europe/Berlin", "30 2 * * *"),
        ("london", "Europe/London", "30 1 * * *"),
    ]))
    .prepare(started_at("europe"))
    .run();
    // 2026-03-08 07:00 UTC: New York goes from 02:00 EST to 03:00 EDT.
    let america = Start::new(&dst_config(&[(
        "newyork",
        "America/New_York",
        "30 2 * * *",
    )]))
    .prepare(started_at("america"))
    .run();
    // Berlin's job reports after the gap (from 01:00:00 UTC, 10 s after its clock
    // started); London's does not.
    std::thread::sleep(Duration::from_millis(12_500).saturating_sub(began.elapsed()));
    let (code, _, err) = europe.ctl(&["ping", "berlin"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(europe.wait_lines(1), ["london firing"], "{}", europe.log());
    assert_eq!(
        america.wait_lines(1),
        ["newyork firing"],
        "{}",
        america.log()
    );
    let fired_after = began.elapsed();
    assert!(
        fired_after >= Duration::from_secs(15),
        "due 15 s after the start, not before: {fired_after:?}"
    );
    // Not a second time that day; Berlin's next is the next night's 02:30 CEST.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(europe.lines(), ["london firing"]);
    assert_eq!(america.lines(), ["newyork firing"]);
    let status = europe.status();
    let berlin = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "berlin")
        .unwrap()
        .clone();
    assert!(
        berlin["expected_by"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-03-30T00:30:05")),
        "{berlin}"
    );
}

/// A rule's first window starts when it is loaded, and that start is stored before hark
/// says it runs: a SIGKILL soon after does not restart the window.
#[test]
fn the_window_from_the_first_load_survives_a_sigkill_right_after_the_start() {
    let config = r#"
[watch.job]
type = "heartbeat"

[rule.quiet]
watch = "job"
expect_within = "4s"
then = ["rec"]

[action.rec]
type = "shell"
command = @REC@
"#
    .replace("@REC@", &recorder_argv("@DIR@/out", &["{{ event.kind }}"]));
    let mut h = start(&config);
    // The window started at the load, before hark said it runs: before `ready`.
    let ready = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    h.kill_and_restart();
    assert_eq!(h.wait_lines(1), ["missed"], "{}", h.log());
    let waited = ready.elapsed();
    assert!(
        waited < Duration::from_millis(5500),
        "the window ran from the first load (due 4 s after it), not from the restart \
         (2.5 s later, due 6.5 s after it): {waited:?}"
    );
}
