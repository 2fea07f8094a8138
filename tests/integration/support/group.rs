//! A peer's process, in a process group of its own, and what a test does to a broker.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::wait_for;

/// A process started in a process group of its own; the whole group is killed (SIGKILL:
/// an outage, not a shutdown) by `stop` and when dropped.
pub struct Group(pub Option<Child>);

impl Group {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Group {
        let log = std::fs::File::create(log).expect("broker log");
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {cmd:?} ({e}): install rabbitmq-server, mosquitto and nats-server (.ci/run does)")
            });
        Group(Some(child))
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SAFETY: kill(2) on the process group of a child we started in its own group.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

impl Group {
    /// SIGTERM (a broker saves its state on the way out), SIGKILL after 10 s.
    pub fn terminate(&mut self) {
        if let Some(c) = &self.0 {
            // SAFETY: kill(2) on the process group of a child we started in its own group.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGTERM);
            }
        }
        let exited = wait_for(Duration::from_secs(10), || {
            self.0
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some())
        });
        if exited {
            self.0 = None;
        }
        self.stop();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A broker the test can take down and bring back, on the same port and storage.
pub trait Broker {
    fn start(&mut self);
    fn stop(&mut self);
    /// Waits until what the subscriber set up since the last start (its session, its
    /// subscription) would survive a SIGKILL of the broker.
    fn settle(&self) {}
}
