//! nats-server with JetStream, its storage in a temp dir.

use std::process::Command;
use std::time::Duration;

use super::group::{Broker, Group};
use super::{free_port, port_open};
use crate::util::{tempdir, wait_for};

/// Fields drop in order: the process before its directory.
pub struct Nats {
    process: Group,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    pub fn new() -> Nats {
        let mut n = Nats {
            port: free_port(),
            dir: tempdir(),
            process: Group(None),
        };
        n.start();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Broker for Nats {
    fn start(&mut self) {
        self.process = Group::spawn(
            Command::new("nats-server")
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(self.dir.path().join("js")),
            &self
                .dir
                .path()
                .join(format!("nats-{}.log", fastrand::u32(..))),
        );
        assert!(
            wait_for(Duration::from_secs(20), || port_open(self.port)),
            "nats-server did not start"
        );
    }

    fn stop(&mut self) {
        self.process.stop();
    }
}
