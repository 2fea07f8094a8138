//! The `journal` watch against a real journald (inside tests/systemd/sandbox): entries
//! written with `logger` and `systemd-cat` become events, filtered at the source by
//! `match` and here by `pattern`; the cursor is kept across a stop and a SIGKILL, so
//! entries written while hark was down arrive once and none twice, also when the journal
//! was rotated and vacuumed meanwhile.

use std::time::Duration;

use crate::systemd::Sandbox;
use crate::util::*;

const CONFIG: &str = r#"
[daemon]
state_dir = "/var/lib/hark-j"
control_socket = "/run/hark-j.sock"

[watch.kernelish]
type = "journal"
match = { SYSLOG_IDENTIFIER = ["hark-test", "hark-test2"] }
pattern = 'disk (?P<disk>\S+) failed'

[rule.disk]
watch = "kernelish"
trigger_limit = "off"
then = ["rec"]

[action.rec]
type = "shell"
command = ["/bin/sh", "-c", 'echo "$1 $2 $3" >> /var/lib/hark-j/fired', "rec", "{{ event.disk }}", "{{ event.priority }}", "{{ event.identifier }}"]
"#;

fn fired(s: &Sandbox) -> Vec<String> {
    let (_, text) = s.run(&["cat", "/var/lib/hark-j/fired"]);
    text.lines()
        .filter(|l| !l.starts_with("cat:"))
        .map(str::to_string)
        .collect()
}

fn wait_fired(s: &Sandbox, n: usize) -> Vec<String> {
    wait_for(Duration::from_secs(20), || fired(s).len() >= n);
    std::thread::sleep(Duration::from_millis(500));
    let mut f = fired(s);
    f.sort();
    f
}

fn start(s: &Sandbox) {
    s.ok(&[
        "systemd-run",
        "--unit=hark-j",
        "--property=Type=notify",
        "/usr/bin/hark",
        "run",
        "-c",
        "/etc/hark/j.toml",
    ]);
}

#[test]
fn journal_entries_fire_once_each_across_a_stop_and_a_sigkill() {
    let s = Sandbox::up();
    s.copy(std::path::Path::new(HARK), "/usr/bin/hark");
    s.ok(&["mkdir", "-p", "/var/lib/hark-j", "/etc/hark"]);
    s.write("/etc/hark/j.toml", CONFIG);
    start(&s);
    s.ok(&["logger", "-t", "hark-test", "disk sda failed"]);
    s.ok(&["logger", "-t", "someone-else", "disk sdx failed"]);
    s.ok(&["logger", "-t", "hark-test", "all is well"]);
    s.ok(&[
        "systemd-cat",
        "-t",
        "hark-test2",
        "-p",
        "err",
        "echo",
        "disk sdb failed",
    ]);
    let got = wait_fired(&s, 2);
    let (_, journal) = s.run(&["journalctl", "-u", "hark-j", "--no-pager"]);
    assert_eq!(
        got,
        ["sda 5 hark-test", "sdb 3 hark-test2"],
        "hark's journal:\n{journal}"
    );

    // Written while hark is stopped: read after it starts again, from its cursor.
    s.ok(&["systemctl", "stop", "hark-j"]);
    s.ok(&["logger", "-t", "hark-test", "disk sdc failed"]);
    start(&s);
    let got = wait_fired(&s, 3);
    assert_eq!(
        got,
        ["sda 5 hark-test", "sdb 3 hark-test2", "sdc 5 hark-test"]
    );

    // A SIGKILL: nothing is repeated, what follows arrives.
    s.ok(&["systemctl", "kill", "-s", "KILL", "hark-j"]);
    wait_for(Duration::from_secs(10), || {
        s.run(&["systemctl", "is-active", "hark-j"]).1.trim() != "active"
    });
    let _ = s.run(&["systemctl", "reset-failed", "hark-j"]);
    s.ok(&["logger", "-t", "hark-test", "disk sdd failed"]);
    start(&s);
    let got = wait_fired(&s, 4);
    assert_eq!(
        got,
        [
            "sda 5 hark-test",
            "sdb 3 hark-test2",
            "sdc 5 hark-test",
            "sdd 5 hark-test"
        ]
    );

    // The journal rotated and vacuumed while followed, and while hark was stopped (its
    // cursor's file gone): not an error, each later entry once.
    s.ok(&["journalctl", "--rotate"]);
    s.ok(&["logger", "-t", "hark-test", "disk sde failed"]);
    s.ok(&["journalctl", "--rotate"]);
    s.ok(&["journalctl", "--vacuum-files=1"]);
    s.ok(&["logger", "-t", "hark-test", "disk sdf failed"]);
    assert_eq!(wait_fired(&s, 6).len(), 6, "{:?}", fired(&s));
    s.ok(&["systemctl", "stop", "hark-j"]);
    s.ok(&["journalctl", "--rotate"]);
    s.ok(&["journalctl", "--vacuum-files=1"]);
    s.ok(&["logger", "-t", "hark-test", "disk sdg failed"]);
    s.ok(&["logger", "-t", "hark-test", "disk sdh failed"]);
    start(&s);
    let got = wait_fired(&s, 8);
    let (_, journal) = s.run(&["journalctl", "-u", "hark-j", "--no-pager"]);
    assert_eq!(
        got,
        [
            "sda 5 hark-test",
            "sdb 3 hark-test2",
            "sdc 5 hark-test",
            "sdd 5 hark-test",
            "sde 5 hark-test",
            "sdf 5 hark-test",
            "sdg 5 hark-test",
            "sdh 5 hark-test"
        ],
        "hark's journal:\n{journal}"
    );
    // A message that is not UTF-8 (journalctl writes it as a binary field): its bytes
    // as U+FFFD, the rest as written.
    s.ok(&[
        "sh",
        "-c",
        r"printf 'disk sd\377z failed\n' | systemd-cat -t hark-test",
    ]);
    let got = wait_fired(&s, 9);
    assert_eq!(
        got.last().map(String::as_str),
        Some("sd\u{fffd}z 6 hark-test")
    );
    let status = s.ok(&["hark", "status", "--socket", "/run/hark-j.sock"]);
    assert!(status.contains("kernelish"), "{status}");
    assert!(!status.contains("journalctl"), "{status}");
}
