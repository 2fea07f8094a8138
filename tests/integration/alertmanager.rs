//! The `alertmanager` action against the real Alertmanager (Debian's
//! prometheus-alertmanager, which `.ci/run` installs), started here on loopback ports: the
//! alert arrives firing with its labels, is posted again after Alertmanager restarts
//! empty, reaches every member of a cluster even one that was down, and is resolved.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::http_server::Server;
use crate::util::*;

const BINARY: &str = "prometheus-alertmanager";

/// An Alertmanager on 127.0.0.1, with its own empty storage; killed when dropped.
struct Alertmanager {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Alertmanager {
    fn start(port: u16) -> Alertmanager {
        let dir = tempdir();
        std::fs::write(
            dir.path().join("am.yml"),
            "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("am.log")).unwrap();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: this one is alone.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {BINARY} ({e}): install Debian's prometheus-alertmanager (.ci/run does)")
            });
        let am = Alertmanager { child, port, dir };
        let ready = wait_for(Duration::from_secs(30), || {
            get(port, "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        assert!(ready, "Alertmanager never became ready:\n{}", am.log());
        am
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default()
    }

    /// The alerts Alertmanager holds as not resolved.
    fn alerts(&self) -> Vec<Value> {
        get(self.port, "/api/v2/alerts")
            .and_then(|(_, body)| serde_json::from_str::<Vec<Value>>(&body).ok())
            .unwrap_or_default()
    }

    fn wait_alerts(&self, n: usize, limit: Duration) -> Vec<Value> {
        wait_for(limit, || self.alerts().len() == n);
        self.alerts()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET to 127.0.0.1: the status and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = reply.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

fn time_of(alert: &Value, key: &str) -> SystemTime {
    let s = alert[key].as_str().unwrap_or_default();
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .unwrap_or_else(|e| panic!("{key} {s:?}: {e}"))
}

fn start_hark(health: &Server, urls: &str) -> Hark {
    start(&fixture(
        "alertmanager/check_to_alertmanager.toml",
        &[("@URL@", &health.url("/health")), ("@URLS@", urls)],
    ))
}

#[test]
fn the_alert_fires_with_its_labels_is_posted_again_after_a_restart_and_resolves() {
    let health = Server::start();
    health.set_status(500);
    let mut am = Alertmanager::start(free_port());
    let h = start_hark(&health, &format!("url = \"{}\"", am.url()));

    let alerts = am.wait_alerts(1, Duration::from_secs(20));
    assert_eq!(alerts.len(), 1, "{alerts:?}\nhark:\n{}", h.log());
    let a = &alerts[0];
    let labels = &a["labels"];
    assert_eq!(labels["alertname"], "api_down", "{a}");
    assert_eq!(labels["severity"], "critical", "{a}");
    assert_eq!(labels["host"], "web-1", "{a}");
    assert_eq!(labels["team"], "ops", "{a}");
    assert_eq!(labels["watch"], "api", "{a}");
    assert_eq!(a["annotations"]["summary"], "api answers 500", "{a}");
    assert_eq!(
        a["annotations"]["runbook"], "https://runbooks.example/api_down",
        "{a}"
    );
    assert_eq!(a["generatorURL"], "hark://web-1/api_down", "{a}");
    assert_eq!(a["status"]["state"], "active", "{a}");
    // Each post says the alert ends four `resend`s (20 s) later unless posted again.
    let now = SystemTime::now();
    let ends = time_of(a, "endsAt");
    assert!(
        ends > now + Duration::from_secs(10) && ends < now + Duration::from_secs(25),
        "endsAt {ends:?}, now {now:?}"
    );
    let started = a["startsAt"].clone();

    // Alertmanager keeps alerts in memory: restarted empty, it learns the alert again
    // from the next re-post.
    let port = am.port;
    drop(am);
    am = Alertmanager::start(port);
    assert!(am.alerts().is_empty(), "a fresh Alertmanager has no alerts");
    let alerts = am.wait_alerts(1, Duration::from_secs(20));
    assert_eq!(alerts.len(), 1, "not posted again; hark:\n{}", h.log());
    assert_eq!(alerts[0]["startsAt"], started, "the same alert, same start");

    // Resolved: gone long before the 20 s its last post gave it, and not posted again.
    health.set_status(200);
    let alerts = am.wait_alerts(0, Duration::from_secs(10));
    assert!(alerts.is_empty(), "{alerts:?}\nhark:\n{}", h.log());
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        am.alerts().is_empty(),
        "a resolved alert was posted again: {:?}",
        am.alerts()
    );
}

#[test]
fn every_member_of_a_cluster_gets_the_alert_even_one_that_was_down() {
    let health = Server::start();
    health.set_status(503);
    let up = Alertmanager::start(free_port());
    let later_port = free_port();
    let urls = format!(
        "urls = [\"{}\", \"http://127.0.0.1:{later_port}\"]",
        up.url()
    );
    let h = start_hark(&health, &urls);
    let alerts = up.wait_alerts(1, Duration::from_secs(20));
    assert_eq!(alerts.len(), 1, "hark:\n{}", h.log());
    assert_eq!(alerts[0]["annotations"]["summary"], "api answers 503");

    let later = Alertmanager::start(later_port);
    let alerts = later.wait_alerts(1, Duration::from_secs(20));
    assert_eq!(alerts.len(), 1, "hark:\n{}", h.log());
    assert_eq!(alerts[0]["labels"]["alertname"], "api_down");

    health.set_status(200);
    assert!(up.wait_alerts(0, Duration::from_secs(10)).is_empty());
    assert!(later.wait_alerts(0, Duration::from_secs(10)).is_empty());
}

#[test]
fn a_firing_alert_is_still_posted_and_resolved_after_hark_is_killed_and_restarted() {
    let health = Server::start();
    health.set_status(500);
    let mut am = Alertmanager::start(free_port());
    let mut h = start_hark(&health, &format!("url = \"{}\"", am.url()));
    assert_eq!(am.wait_alerts(1, Duration::from_secs(20)).len(), 1);

    // The rule still fires after the restart, so nothing fires anew: only the alert
    // hark stored can reach an Alertmanager that forgot it meanwhile.
    h.kill_and_restart();
    let port = am.port;
    drop(am);
    am = Alertmanager::start(port);
    let alerts = am.wait_alerts(1, Duration::from_secs(20));
    assert_eq!(alerts.len(), 1, "hark:\n{}", h.log());
    assert_eq!(alerts[0]["labels"]["alertname"], "api_down");

    health.set_status(200);
    assert!(
        am.wait_alerts(0, Duration::from_secs(10)).is_empty(),
        "hark:\n{}",
        h.log()
    );
}

#[test]
fn each_group_is_its_own_alert_labelled_with_its_fields_and_resolves_after_quiet() {
    let am = Alertmanager::start(free_port());
    let dir = tempdir();
    std::fs::write(dir.path().join("auth.log"), "").unwrap();
    let h = start_in(
        dir,
        &format!(
            "[watch.auth]\ntype = \"log\"\npaths = [\"@DIR@/auth.log\"]\n\
             pattern = 'Failed password for (?P<user>\\S+) from (?P<ip>[0-9.]+)'\n\n\
             [rule.brute]\nwatch = \"auth\"\ngroup_by = [\"ip\"]\ntimes = 2\nwithin = \"1m\"\n\
             resolve_after = \"4s\"\nthen = [\"am\"]\n\n\
             [action.am]\ntype = \"alertmanager\"\nurl = \"{}\"\nresend = \"1s\"\n",
            am.url()
        ),
    );
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(h.path("auth.log"))
        .unwrap();
    for ip in [
        "203.0.113.7",
        "198.51.100.2",
        "203.0.113.7",
        "198.51.100.2",
        "192.0.2.1",
    ] {
        writeln!(
            log,
            "sshd[1]: Failed password for root from {ip} port 22 ssh2"
        )
        .unwrap();
    }
    drop(log);
    let alerts = am.wait_alerts(2, Duration::from_secs(20));
    let mut ips: Vec<&str> = alerts
        .iter()
        .map(|a| a["labels"]["ip"].as_str().unwrap_or("none"))
        .collect();
    ips.sort();
    assert_eq!(
        ips,
        ["198.51.100.2", "203.0.113.7"],
        "{alerts:?}\nhark:\n{}",
        h.log()
    );
    assert!(alerts.iter().all(|a| a["labels"]["alertname"] == "brute"));
    // Both resolve (hark posts their endsAt) once 4 s pass without a match.
    assert!(
        am.wait_alerts(0, Duration::from_secs(15)).is_empty(),
        "hark:\n{}",
        h.log()
    );
}
