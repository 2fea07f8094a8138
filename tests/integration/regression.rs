//! One test per bug that was fixed, named after the bug: what it did, so that it stays
//! fixed. Each says in its comment what the fix was.

use std::io::Write as _;
use std::time::Duration;

use crate::util::*;

/// sshd's failed logins per address, firing at 3 within a minute, ending after
/// `resolve_after` without one; `rec` records state and address.
fn brute(resolve_after: &str) -> String {
    recorded(
        "type = \"log\"\npaths = [\"@DIR@/auth.log\"]\n\
         pattern = 'Failed password for \\S+ from (?P<ip>[0-9.]+)'",
        &format!(
            "group_by = [\"ip\"]\ntimes = 3\nwithin = \"1m\"\nresolve_after = \"{resolve_after}\"\n\
             resolve = [\"rec\"]"
        ),
        &["{{ state }}", "{{ group.ip }}"],
    )
}

fn failed_logins(h: &Hark, ip: &str, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(h.path("auth.log"))
        .unwrap();
    for _ in 0..n {
        writeln!(
            f,
            "sshd[1]: Failed password for root from {ip} port 22 ssh2"
        )
        .unwrap();
    }
}

/// A reload (SIGHUP) removed the stored firing groups of every rule with `group_by`: it
/// kept only stored keys of the form `rule/watch`, and a group's key is `rule/␞group`. A
/// restart after the reload forgot that the group was firing, and its `resolve` never
/// ran. Fix: a reload keeps every stored state the engine still holds.
#[test]
fn a_reload_forgot_the_stored_firing_groups_of_rules_with_group_by() {
    let dir = tempdir();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let mut h = start_in(dir, &brute("4s"));
    failed_logins(&h, "192.0.2.7", 3);
    assert_eq!(h.wait_lines(2), ["firing", "192.0.2.7"], "{}", h.log());
    h.reload_with(&brute("4s"));
    assert!(h.wait_log("new configuration in place"), "{}", h.log());
    h.kill_and_restart();
    assert_eq!(
        h.wait_lines(4)[2..],
        ["resolved", "192.0.2.7"],
        "the group still fires after the restart and resolves on time:\n{}",
        h.log()
    );
}

/// Lines were read twice when logrotate renamed a log while its writer still wrote: a
/// write reported as `app.log` was looked at after the rename and the new file's creation,
/// so it opened a reader on the new file from 0, and the rename reported after it took
/// that reader away, so the next write opened a second one on the same file from 0. All
/// of it here happens while hark is stopped (SIGSTOP), so every event is looked at with
/// the files already in their final state, the order that doubled lines. Fix: readers
/// are keyed by (device, inode); an event only says which path to look at again.
#[test]
fn a_write_reported_after_logrotate_renamed_the_file_opened_a_second_reader() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("logs/app.log"), "").unwrap();
    let config = recorded(
        "type = \"log\"\npaths = [\"@DIR@/logs/app.log\"]\npattern = 'line (?P<n>\\S+)'",
        "trigger_limit = \"off\"",
        &["{{ event.n }}"],
    );
    let h = start_in(dir, &config);
    let log = h.path("logs/app.log");
    let append = |path: &std::path::Path, n: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        writeln!(f, "line {n}").unwrap();
    };
    append(&log, "a1");
    assert_eq!(h.wait_lines(1), ["a1"], "{}", h.log());
    h.freeze();
    let mut writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(writer, "line a2").unwrap();
    std::fs::rename(&log, h.path("logs/app.log.1")).unwrap();
    std::fs::write(&log, "line b1\n").unwrap();
    // The writer has not reopened yet: its lines go to the renamed file.
    writeln!(writer, "line a3").unwrap();
    h.signal(libc::SIGCONT);
    h.wait_lines(4);
    // Anything read twice comes in the next moments, or with the next write.
    std::thread::sleep(Duration::from_millis(700));
    append(&log, "b2");
    h.wait_lines(5);
    std::thread::sleep(Duration::from_millis(300));
    let mut got = h.lines();
    got.sort();
    assert_eq!(
        got,
        ["a1", "a2", "a3", "b1", "b2"],
        "each line once:\n{}",
        h.log()
    );
}

/// The same at scale: 10,000 addresses firing, a reload, a SIGKILL and a start; every
/// group is taken up again (a restart takes up only firing groups, so the count held is
/// the count that survived).
#[test]
fn ten_thousand_firing_groups_survive_a_reload_and_a_sigkill() {
    const N: usize = 10_000;
    let dir = tempdir();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let config = brute("1h").replace("then = [\"rec\"]\n", "");
    let mut h = start_in(dir, &config);
    let mut text = String::new();
    for _ in 0..3 {
        for i in 0..N {
            let ip = format!("10.0.{}.{}", i / 256, i % 256);
            text.push_str(&format!(
                "sshd[1]: Failed password for root from {ip} port 22 ssh2\n"
            ));
        }
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(h.path("auth.log"))
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let held = |h: &Hark| h.status()["rules"][0]["groups"].as_u64().unwrap_or(0);
    // Each group's firing is logged once ("rule fired"); stored with it.
    let fired = |h: &Hark| h.log().matches("rule fired").count();
    assert!(
        wait_for(Duration::from_secs(60), || fired(&h) == N),
        "fired {}, held {}",
        fired(&h),
        held(&h)
    );
    h.reload_with(&config);
    assert!(h.wait_log("new configuration in place"), "{}", h.log());
    h.kill_and_restart();
    assert_eq!(held(&h), N as u64, "every firing group is taken up again");
    assert_eq!(
        h.log()
            .matches("still firing from before the restart")
            .count(),
        N
    );
}
