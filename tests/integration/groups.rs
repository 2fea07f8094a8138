//! fail2ban's job: a log watch, and a rule counting failed logins per address
//! (`group_by`, `times` + `within`) that fires for the offending address alone and
//! resolves after `resolve_after` of quiet, across a restart too.

use std::io::Write;
use std::time::Duration;

use crate::util::*;

fn config(resolve_after: &str) -> String {
    format!(
        "[watch.auth]\ntype = \"log\"\npaths = [\"@DIR@/auth.log\"]\n\
         pattern = 'Failed password for (?P<user>\\S+) from (?P<ip>[0-9.]+)'\n\n\
         [rule.brute]\nwatch = \"auth\"\ngroup_by = [\"ip\"]\ntimes = 3\nwithin = \"1m\"\n\
         resolve_after = \"{resolve_after}\"\nthen = [\"rec\"]\nresolve = [\"rec\"]\n\n\
         [action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv(
            "@DIR@/out",
            &["{{ state }}", "{{ group.ip }}", "{{ count }}"]
        )
    )
}

fn append(h: &Hark, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(h.path("auth.log"))
        .unwrap();
    for l in lines {
        writeln!(f, "Dec  2 10:00:00 host sshd[1]: {l}").unwrap();
    }
}

fn failed(ip: &str) -> String {
    format!("Failed password for root from {ip} port 22 ssh2")
}

fn start_auth(resolve_after: &str) -> Hark {
    let dir = tempdir();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    start_in(dir, &config(resolve_after))
}

/// The firing groups in `hark status --json`: (ip, state).
fn groups(h: &Hark) -> Vec<(String, String)> {
    h.status()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            Some((
                r["group"]["ip"].as_str()?.to_string(),
                r["state"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn only_the_address_that_failed_times_within_the_window_fires_and_it_resolves_after_quiet() {
    let h = start_auth("3s");
    let (a, b) = (failed("203.0.113.7"), failed("198.51.100.2"));
    append(
        &h,
        &[
            &a,
            &b,
            "Accepted password for root from 203.0.113.7",
            &a,
            &b,
            &a,
        ],
    );
    let got = h.wait_lines(3);
    assert_eq!(got, ["firing", "203.0.113.7", "3"], "log:\n{}", h.log());
    let shown = groups(&h);
    assert!(
        shown.contains(&("203.0.113.7".into(), "firing".into())),
        "{shown:?}"
    );
    assert!(
        shown.contains(&("198.51.100.2".into(), "pending".into())),
        "{shown:?}"
    );
    let (_, text, _) = h.ctl(&["explain", "brute"]);
    assert!(text.contains("[ip=203.0.113.7]: firing"), "{text}");
    assert!(text.contains("2 groups held"), "{text}");
    // More failures while firing fire nothing more, and hold the resolve back.
    append(&h, &[&a]);
    let got = h.wait_lines(6);
    assert_eq!(
        got[3..],
        ["resolved", "203.0.113.7", "4"],
        "the resolve runs after 3 s without a match; log:\n{}",
        h.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.lines().len(), 6, "198.51.100.2 failed twice: never fires");
}

#[test]
fn a_firing_address_stays_firing_across_a_restart_and_resolves_once_on_time() {
    let mut h = start_auth("5s");
    let a = failed("192.0.2.50");
    append(&h, &[&a, &a, &a]);
    assert_eq!(
        h.wait_lines(3),
        ["firing", "192.0.2.50", "3"],
        "{}",
        h.log()
    );
    h.restart();
    assert_eq!(
        groups(&h),
        [("192.0.2.50".into(), "firing".into())],
        "{}",
        h.log()
    );
    // No line is read twice after the restart, so nothing fires again; it resolves 5 s
    // after its last match.
    let got = h.wait_lines(6);
    assert_eq!(got[3..], ["resolved", "192.0.2.50", "3"], "{}", h.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.lines().len(), 6);
    assert!(groups(&h).iter().all(|(_, s)| s != "firing"));
}

#[test]
fn hark_test_shows_a_log_line_counted_for_its_group_and_the_group_in_the_actions() {
    let dir = tempdir();
    let file = dir.path().join("hark.toml");
    let cfg = with_state_dir(&config("10m")).replace("@DIR@", &dir.path().to_string_lossy());
    std::fs::write(&file, cfg).unwrap();
    let out = std::process::Command::new(HARK)
        .args(["test", "-c"])
        .arg(&file)
        .args([
            "--event",
            "auth line=\"Failed password for root from 192.0.2.4\" ip=192.0.2.4 user=root",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("rule `brute`: matches; pending 1/3"),
        "{text}"
    );
    assert!(
        text.contains("\"192.0.2.4\""),
        "the group in the rendered argv: {text}"
    );
}
