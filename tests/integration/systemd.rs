//! hark under a real systemd (PID 1 of its own namespaces, booted by
//! tests/systemd/sandbox on an overlay of this machine's root; needs root, as CI runs):
//! the unit starts (active after READY=1), a rule fires, a good reload adds a rule in
//! the same process, a bad one is refused while the old rules keep firing, `hark status`
//! answers, the journal has structured fields, the watchdog is fed, and stop succeeds.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

pub struct Sandbox {
    base: tempfile::TempDir,
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd/sandbox")
}

impl Sandbox {
    pub fn up() -> Sandbox {
        let sandbox = Sandbox { base: tempdir() };
        let out = sandbox.script(&["up"]);
        assert!(
            out.status.success(),
            "the systemd sandbox did not boot (it needs root):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sandbox
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        Command::new(script())
            .args(args)
            .env("SYSD_BASE", self.base.path())
            .output()
            .expect("run the sandbox script")
    }

    /// Runs a command inside: whether it succeeded, and its stdout and stderr.
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec!["run"];
        all.extend(args);
        let out = self.script(&all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(ok, "{args:?} failed inside:\n{text}");
        text
    }

    pub fn copy(&self, from: &Path, to: &str) {
        let out = self.script(&["cp", &from.to_string_lossy(), to]);
        assert!(out.status.success(), "cp {from:?} {to}");
    }

    pub fn write(&self, to: &str, text: &str) {
        let file = self.base.path().join("staged");
        std::fs::write(&file, text).unwrap();
        self.copy(&file, to);
    }

    fn show(&self, property: &str) -> String {
        self.ok(&["systemctl", "show", "hark", "-p", property, "--value"])
            .trim()
            .to_string()
    }

    fn fired(&self) -> Vec<String> {
        let (_, text) = self.run(&["cat", "/var/lib/hark/fired"]);
        text.lines()
            .filter(|l| !l.starts_with("cat:"))
            .map(str::to_string)
            .collect()
    }

    /// Creates a file in the watched directory and waits until `n` actions have run.
    fn touch_and_wait(&self, name: &str, n: usize) -> Vec<String> {
        self.ok(&["touch", &format!("/srv/hark-test/{name}")]);
        wait_for(Duration::from_secs(15), || self.fired().len() >= n);
        std::thread::sleep(Duration::from_millis(300));
        self.fired()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}

fn fixture_text(name: &str) -> String {
    fixture(name, &[])
}

#[test]
fn the_unit_starts_fires_reloads_answers_logs_and_stops_under_systemd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = Sandbox::up();
    s.copy(Path::new(HARK), "/usr/bin/hark");
    s.copy(
        &root.join("systemd/hark.service"),
        "/etc/systemd/system/hark.service",
    );
    // A short watchdog, so the test sees several periods go by without a restart.
    s.write(
        "/etc/systemd/system/hark.service.d/test.conf",
        "[Service]\nWatchdogSec=2s\n",
    );
    s.write("/etc/hark/hark.toml", &fixture_text("systemd/before.toml"));
    s.ok(&["mkdir", "-p", "/srv/hark-test", "/etc/hark/rules.d"]);
    s.ok(&["systemctl", "daemon-reload"]);
    let started = Instant::now();
    s.ok(&["systemctl", "start", "hark"]);
    assert_eq!(s.ok(&["systemctl", "is-active", "hark"]).trim(), "active");
    let pid = s.show("MainPID");

    assert_eq!(s.touch_and_wait("a", 1), ["first"]);

    // A good reload: the new rule fires, in the same process.
    s.write("/etc/hark/hark.toml", &fixture_text("systemd/after.toml"));
    s.ok(&["systemctl", "reload", "hark"]);
    assert_eq!(s.show("MainPID"), pid, "a reload restarted the daemon");
    let mut fired = s.touch_and_wait("b", 3);
    fired.sort();
    assert_eq!(fired, ["first", "first", "second"]);

    // A bad one: `systemctl reload` fails on validation; a SIGHUP that reaches hark is
    // refused by hark itself. Either way the rules keep firing and the unit stays up.
    s.write("/etc/hark/hark.toml", &fixture_text("systemd/broken.toml"));
    let (ok, text) = s.run(&["systemctl", "reload", "hark"]);
    assert!(
        !ok,
        "a reload with a broken configuration succeeded:\n{text}"
    );
    s.ok(&["systemctl", "kill", "-s", "HUP", "--kill-whom=main", "hark"]);
    assert_eq!(s.ok(&["systemctl", "is-active", "hark"]).trim(), "active");
    assert_eq!(s.touch_and_wait("c", 5).len(), 5);

    let status: serde_json::Value = {
        let mut last = String::new();
        wait_for(Duration::from_secs(10), || {
            last = s.ok(&["hark", "status", "--json"]);
            last.contains("\"ok\": false")
        });
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"))
    };
    assert_eq!(status["pid"].to_string(), pid, "{status}");
    let reload = &status["last_reload"];
    assert_eq!(reload["ok"], false, "{status}");
    assert!(
        reload["errors"][0].as_str().unwrap().contains("nowhere"),
        "{status}"
    );
    let rules: Vec<&str> = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(rules, ["first", "second"], "{status}");

    // The journal, through its native protocol: each field its own journal field.
    let journal = s.ok(&["journalctl", "-u", "hark", "-o", "json", "--no-pager"]);
    let fired_record = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["MESSAGE"] == "rule fired" && r["RULE"] == "first");
    let record = fired_record.unwrap_or_else(|| panic!("no structured record in:\n{journal}"));
    assert_eq!(record["WATCH"], "drop", "{record}");
    assert_eq!(record["KIND"], "create", "{record}");
    assert_eq!(record["SYSLOG_IDENTIFIER"], "hark", "{record}");

    // Several watchdog periods went by: no restart.
    if let Some(rest) = Duration::from_secs(5).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    assert_eq!(s.show("NRestarts"), "0");
    assert_eq!(s.show("MainPID"), pid);

    s.ok(&["systemctl", "stop", "hark"]);
    let (_, state) = s.run(&["systemctl", "is-active", "hark"]);
    assert_eq!(state.trim(), "inactive");
    assert_eq!(s.show("Result"), "success");
    assert_eq!(s.show("ExecMainStatus"), "0");
}
