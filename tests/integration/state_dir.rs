//! A state directory that fills up under a running daemon, or is read-only when it
//! starts: a loud error, deliveries still made, nothing half-written left behind, and the
//! daemon back to storing once there is room again. The directory is a tmpfs of its own
//! with a size limit, mounted by the test (root, as CI runs).

use std::process::Command;
use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

/// A small tmpfs mounted on `dir`; unmounted when dropped.
struct Tmpfs {
    dir: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills the file system up to its last byte.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.dir.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4096"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// hark on `state_dir/file_and_port.toml` with its state directory on a 2 MB tmpfs.
fn start_on_tmpfs(server: &Server, address: &str) -> (Hark, Tmpfs) {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let fs = Tmpfs::mount(&dir.path().join("state"), "2m");
    let h = start_in(
        dir,
        &fixture(
            "state_dir/file_and_port.toml",
            &[("@URL@", &server.url("/hook")), ("@ADDRESS@", address)],
        ),
    );
    (h, fs)
}

fn wait_requests(server: &Server, n: usize) -> usize {
    wait_for(Duration::from_secs(20), || server.requests().len() >= n);
    server.requests().len()
}

#[test]
fn a_state_dir_that_fills_up_is_a_loud_error_loses_nothing_and_recovers() {
    let server = Server::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = port.local_addr().unwrap().to_string();
    let (mut h, fs) = start_on_tmpfs(&server, &address);
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert_eq!(wait_requests(&server, 1), 1, "log:\n{}", h.log());

    // Full: neither a firing nor a rule's new state can be stored. That is logged at
    // ERROR, and the delivery is still made.
    let filler = fs.fill();
    std::fs::write(h.path("in/b"), "x").unwrap();
    assert_eq!(
        wait_requests(&server, 2),
        2,
        "not delivered; log:\n{}",
        h.log()
    );
    assert!(
        h.wait_log("ERROR cannot write to the state store"),
        "log:\n{}",
        h.log()
    );
    assert!(
        h.log().contains("No space left on device"),
        "log:\n{}",
        h.log()
    );
    drop(port);
    assert!(
        h.wait_log("rule firing rule=port_down"),
        "log:\n{}",
        h.log()
    );

    // Room again: the next firing is stored again, without a restart.
    std::fs::remove_file(filler).unwrap();
    std::fs::write(h.path("in/c"), "x").unwrap();
    assert_eq!(
        wait_requests(&server, 3),
        3,
        "not delivered; log:\n{}",
        h.log()
    );
    assert!(
        h.wait_log("the state store is written to again"),
        "log:\n{}",
        h.log()
    );

    // What is on disk is whole: the next start reads it without a complaint and has
    // nothing left to deliver; and the state the full disk refused went with the next
    // write, so the rule that fired then does not fire again.
    h.restart();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(h.path("in/d"), "x").unwrap();
    assert_eq!(wait_requests(&server, 4), 4, "log:\n{}", h.log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.requests().len(), 4, "a delivery was repeated");
    let log = h.log();
    assert!(
        !log.contains("ERROR")
            && !log.contains("WARN")
            && !log.contains("resuming")
            && !log.contains("rule firing rule=port_down"),
        "log after the restart:\n{log}"
    );
}

#[test]
fn a_read_only_state_dir_stops_the_daemon_at_start_with_the_reason() {
    let dir = tempdir();
    let state = dir.path().join("state");
    let _fs = Tmpfs::mount(&state, "1m");
    let mount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(mount.success());
    let config = dir.path().join("hark.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[watch.w]\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n",
            state.display()
        ),
    )
    .unwrap();
    let out = Command::new(HARK)
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("state store {}/state.redb", state.display()))
            && err.contains("Read-only file system"),
        "{err}"
    );
}

#[test]
fn a_delivery_made_while_the_disk_was_full_is_not_left_pending_nor_made_again() {
    // Regression: the removal of a delivered entry failed on the full disk and was never
    // tried again: `hark status` showed it pending for good, and a restart delivered it
    // again.
    let server = Server::start();
    server.set_status(503);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = port.local_addr().unwrap().to_string();
    let (mut h, fs) = start_on_tmpfs(&server, &address);
    std::fs::write(h.path("in/a"), "x").unwrap();
    assert!(h.wait_log("delivery failed; retrying"), "log:\n{}", h.log());
    // Stored while there was room; now the disk is full, and the receiver takes it.
    let filler = fs.fill();
    server.set_status(200);
    assert!(h.wait_log("delivered rule=dropped"), "log:\n{}", h.log());
    assert!(
        h.wait_log("cannot update the outbox now; trying again"),
        "log:\n{}",
        h.log()
    );
    // Room again, and nothing else written: the removal goes in by itself.
    std::fs::remove_file(filler).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || h
            .log()
            .contains("the outbox is up to date again")),
        "log:\n{}",
        h.log()
    );
    assert_eq!(h.status()["outbox"]["pending"], 0);
    let delivered = server.requests().iter().filter(|(s, _)| *s == 200).count();
    h.kill_and_restart();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !h.log().contains("resuming deliveries"),
        "log:\n{}",
        h.log()
    );
    assert_eq!(
        server.requests().iter().filter(|(s, _)| *s == 200).count(),
        delivered,
        "delivered again after the restart"
    );
}
