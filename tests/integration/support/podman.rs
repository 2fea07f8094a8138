//! Debian's Podman serving the Docker Engine API (`podman system service`) on a socket
//! of the test's own, with storage of its own; an image made on the spot from
//! busybox-static (no registry). These machines need runc, cgroupfs and vfs (crun
//! refuses the hybrid cgroup layout), and ulimits within the host's hard limits.

use std::process::Command;
use std::time::Duration;

use super::group::Group;
use crate::util::{tempdir, wait_for};

pub const IMAGE: &str = "localhost/hark-busybox:1";

pub struct Podman {
    service: Group,
    pub dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let dir = tempdir();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox: install busybox-static (tests/setup does)");
        for applet in ["sh", "sleep", "true", "false", "echo"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let tar = dir.path().join("image.tar");
        let made = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(made.success());
        let mut p = Podman {
            service: Group(None),
            dir,
        };
        p.run(&["import", &tar.to_string_lossy(), IMAGE]);
        p.start();
        p
    }

    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("api.sock")
    }

    /// `podman` with this test's storage and the runtime settings these machines need.
    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--storage-driver", "vfs", "--events-backend", "file"]);
        c
    }

    /// Runs a podman command; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("podman: install podman and runc (tests/setup does)");
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a podman command whatever its exit status (`healthcheck run` fails when the
    /// check does).
    pub fn command_output(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().expect("podman")
    }

    /// `podman run -d` of the test image, with limits the host allows and no network.
    pub fn container(&self, name: &str, extra: &[&str], command: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        args.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
        args.extend(extra);
        args.push(IMAGE);
        args.extend(command);
        self.run(&args);
    }

    pub fn start(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let mut c = self.command();
        c.args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", self.socket().display()));
        self.service = Group::spawn(&mut c, &self.dir.path().join("service.log"));
        assert!(
            wait_for(Duration::from_secs(30), || {
                std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
            }),
            "podman system service did not listen: {}",
            std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
        );
    }

    /// The API goes away (SIGKILL); containers keep running.
    pub fn stop_service(&mut self) {
        self.service.stop();
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.service.stop();
        let _ = self.command().args(["rm", "-f", "-a", "-t", "0"]).output();
    }
}
