//! BIND 9's `named`: an authoritative server on a free loopback port (IPv4 and IPv6),
//! with zones the test writes. SIGHUP reloads them.

use std::process::Command;
use std::time::Duration;

use super::free_port;
use super::group::Group;
use crate::util::{tempdir, wait_for};

pub struct Named {
    process: Group,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Named {
    /// `zones`: (origin, zone file text); a text that is no zone leaves the zone unloaded
    /// (its names answer SERVFAIL).
    pub fn new(zones: &[(&str, &str)]) -> Named {
        let dir = tempdir();
        let port = free_port();
        let d = dir.path().display();
        let mut conf = format!(
            "options {{\n directory \"{d}\";\n listen-on port {port} {{ 127.0.0.1; }};\n \
             listen-on-v6 port {port} {{ ::1; }};\n recursion no;\n pid-file \"{d}/named.pid\";\n \
             session-keyfile \"{d}/session.key\";\n dnssec-validation no;\n}};\ncontrols {{ }};\n"
        );
        for (origin, text) in zones {
            std::fs::write(dir.path().join(format!("{origin}.zone")), text).unwrap();
            conf.push_str(&format!(
                "zone \"{origin}\" {{ type primary; file \"{d}/{origin}.zone\"; }};\n"
            ));
        }
        std::fs::write(dir.path().join("named.conf"), conf).unwrap();
        let process = Group::spawn(
            Command::new("named")
                .arg("-g")
                .arg("-c")
                .arg(dir.path().join("named.conf")),
            &dir.path().join("named.log"),
        );
        let n = Named { process, port, dir };
        assert!(
            wait_for(Duration::from_secs(20), || n
                .log()
                .lines()
                .any(|l| l.ends_with(" running"))),
            "named did not start:\n{}",
            n.log()
        );
        n
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Writes a zone again and has named load it (SIGHUP), waiting for its new serial.
    pub fn rewrite(&self, origin: &str, text: &str, serial: u32) {
        std::fs::write(self.dir.path().join(format!("{origin}.zone")), text).unwrap();
        if let Some(c) = &self.process.0 {
            // SAFETY: kill(2) on a child we started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGHUP);
            }
        }
        let line = format!("zone {origin}/IN: loaded serial {serial}");
        assert!(
            wait_for(Duration::from_secs(20), || self.log().contains(&line)),
            "named did not load serial {serial}:\n{}",
            self.log()
        );
    }
}
