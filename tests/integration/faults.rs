//! Faults from outside: receivers that are slow, hang, answer 100 MB or present a bad
//! certificate; SIGKILL at random points while deliveries are made. The daemon lives
//! through each, loses nothing it accepted, and says what happened. (The inotify queue
//! overflowing while the daemon is stopped is in file_watch.rs, more actions than may run
//! at once in shell_action.rs, a full state directory in state_dir.rs.)

use std::collections::BTreeSet;
use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

fn start_two(bad: &str, good: &Server) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &fixture(
            "faults/two_receivers.toml",
            &[("@BAD@", bad), ("@GOOD@", &good.url("/good"))],
        ),
    )
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_receiver_that_trickles_or_hangs_times_out_and_is_retried_while_others_get_theirs() {
    let bad = Server::start();
    bad.set(|r| r.trickle = Some(Duration::from_millis(100)));
    let good = Server::start();
    let mut h = start_two(&bad.url("/bad"), &good);
    std::fs::write(h.path("in/a"), "x").unwrap();
    wait_for(Duration::from_secs(10), || good.requests().len() == 1);
    assert_eq!(good.requests().len(), 1, "log:\n{}", h.log());
    assert!(h.wait_log("timed out after 1s"), "log:\n{}", h.log());

    bad.set(|r| {
        r.trickle = None;
        r.hang = true;
    });
    std::fs::write(h.path("in/b"), "x").unwrap();
    wait_for(Duration::from_secs(10), || good.requests().len() == 2);
    assert_eq!(
        good.requests().len(),
        2,
        "a hanging receiver held back another's"
    );

    bad.set(|r| r.hang = false);
    let delivered = wait_for(Duration::from_secs(30), || {
        h.log().matches("delivered rule=to_bad").count() >= 2
    });
    assert!(
        delivered,
        "not delivered once the receiver behaved:\n{}",
        h.log()
    );
    assert!(h.child.try_wait().unwrap().is_none(), "hark died");
}

#[test]
fn a_receiver_answering_100_mb_is_delivered_and_costs_no_memory() {
    let bad = Server::start();
    bad.set(|r| r.body_len = Some(100 << 20));
    let good = Server::start();
    let h = start_two(&bad.url("/bad"), &good);
    // The peak before, mostly the (debug) binary's own pages: what the answers add is the
    // point.
    let before_mib = vm_hwm_kib(h.child.id()) / 1024;
    for name in ["a", "b", "c"] {
        std::fs::write(h.path("in").join(name), "x").unwrap();
    }
    let delivered = wait_for(Duration::from_secs(30), || {
        h.log().matches("delivered rule=to_bad").count() == 3
    });
    assert!(delivered, "log:\n{}", h.log());
    let peak_mib = vm_hwm_kib(h.child.id()) / 1024;
    assert!(
        peak_mib < before_mib + 16,
        "peak RSS {peak_mib} MiB from {before_mib} MiB: the answer was buffered"
    );
}

#[test]
fn an_invalid_certificate_is_a_failed_attempt_and_never_a_delivery() {
    let bad = Server::start_tls(30);
    let good = Server::start();
    let url = bad.url("/bad").replace("127.0.0.1", "localhost");
    let h = start_two(&url, &good);
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert!(h.wait_log("delivery failed; retrying"), "log:\n{}", h.log());
    let log = h.log();
    let line = log
        .lines()
        .find(|l| l.contains("delivery failed; retrying"))
        .unwrap_or_default();
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert!(
        bad.requests().is_empty(),
        "a request went through a bad certificate"
    );
    assert!(!log.contains("delivered rule=to_bad"), "{log}");
    wait_for(Duration::from_secs(10), || good.requests().len() == 1);
    assert_eq!(good.requests().len(), 1);
}

#[test]
fn sigkill_at_random_points_while_delivering_loses_no_accepted_delivery() {
    let receiver = Server::start();
    receiver.set_status(503);
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("token"), "t\n").unwrap();
    let mut h = start_in(
        dir,
        &fixture(
            "webhook/default_payload.toml",
            &[("@URL@", &receiver.url("/hook"))],
        ),
    );
    const N: usize = 60;
    for i in 0..N {
        std::fs::write(h.path("in").join(format!("f{i}")), "x").unwrap();
    }
    // Accepted: each firing is stored before it is attempted, and attempted at once.
    wait_for(Duration::from_secs(20), || {
        h.log().matches("rule fired rule=dropped").count() >= N
    });
    std::thread::sleep(Duration::from_millis(300));
    receiver.set(|r| {
        r.status = 200;
        r.delay = Duration::from_millis(15);
    });
    for _ in 0..3 {
        h.kill_and_restart();
        std::thread::sleep(Duration::from_millis(100 + fastrand::u64(..400)));
    }
    h.kill_and_restart();
    let paths = || -> BTreeSet<String> {
        receiver
            .requests()
            .iter()
            .filter(|(status, _)| *status == 200)
            .filter_map(|(_, req)| {
                let body = req.split_once("\r\n\r\n")?.1;
                let v: serde_json::Value = serde_json::from_str(body).ok()?;
                Some(v["event"]["path"].as_str()?.to_string())
            })
            .collect()
    };
    wait_for(Duration::from_secs(60), || paths().len() >= N);
    assert_eq!(paths().len(), N, "log:\n{}", h.log());
}

/// A pids cgroup (v2 where its controller is on, else v1) holding one process.
struct PidsLimit {
    dir: std::path::PathBuf,
    root: std::path::PathBuf,
}

impl PidsLimit {
    fn hold(pid: u32) -> PidsLimit {
        let v2 = std::path::Path::new("/sys/fs/cgroup");
        let root = if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "pids"))
        {
            v2.to_path_buf()
        } else {
            v2.join("pids")
        };
        let dir = root.join(format!("hark-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("a pids cgroup needs root (CI runs as root): {e}"));
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
        PidsLimit { dir, root }
    }

    fn tasks(&self) -> usize {
        std::fs::read_to_string(self.dir.join("pids.current"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set(&self, max: &str) {
        std::fs::write(self.dir.join("pids.max"), max).unwrap();
    }
}

impl Drop for PidsLimit {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn when_fork_fails_the_action_fails_loudly_and_the_daemon_lives() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let mut h = start_in(dir, &fixture("faults/record.toml", &[]));
    // Let the daemon's threads settle, then allow no task more than it has.
    std::thread::sleep(Duration::from_millis(300));
    let limit = PidsLimit::hold(h.child.id());
    limit.set(&limit.tasks().to_string());
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert!(h.wait_log("action failed to start"), "log:\n{}", h.log());
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "hark died:\n{}",
        h.log()
    );

    limit.set("max");
    std::fs::write(h.path("in/b"), "x").unwrap();
    wait_for(Duration::from_secs(10), || !h.lines().is_empty());
    let lines = h.lines();
    assert_eq!(lines.len(), 1, "log:\n{}", h.log());
    assert!(lines[0].ends_with("/in/b"), "{lines:?}");
}

#[test]
fn a_file_name_cannot_forge_a_log_line() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let h = start_in(dir, &fixture("faults/record.toml", &[]));
    let name = "x\n2026-01-01T00:00:00.000000Z ERROR forged \u{1b}[31mred";
    std::fs::write(h.path("in").join(name), "x").unwrap();
    wait_for(Duration::from_secs(10), || !h.lines().is_empty());
    assert!(h.wait_log("rule fired"), "log:\n{}", h.log());
    let log = h.log();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000000Z ERROR forged")),
        "a file name forged a log line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(
        log.contains("\\n"),
        "the newline is not shown escaped:\n{log}"
    );
}
