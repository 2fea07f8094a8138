//! Debian's Exim (exim4-daemon-light; tests/setup installs it), started in the
//! foreground with its own configuration, spool and maildir in a temp dir, on free
//! loopback ports: STARTTLS with AUTH on one, TLS from the first byte on another, with a
//! certificate from rcgen. Its ACL refuses one recipient for good (550) and defers
//! another (451).

use std::os::unix::fs::{chown, MetadataExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;
use crate::pki;
use crate::util::{tempdir, wait_for, Hark};

/// The uid and gid Exim's own processes run as (Debian-exim).
fn exim_user() -> (u32, u32) {
    let spool = std::fs::metadata("/var/spool/exim4")
        .expect("/var/spool/exim4: install exim4-daemon-light (tests/setup does)");
    (spool.uid(), spool.gid())
}

fn chown_all(dir: &Path, (uid, gid): (u32, u32)) {
    chown(dir, Some(uid), Some(gid)).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            chown_all(&e.path(), (uid, gid));
        } else {
            chown(e.path(), Some(uid), Some(gid)).unwrap();
        }
    }
}

/// An Exim daemon, its process group killed (an outage) by `stop` and when dropped.
pub struct Exim {
    pub dir: tempfile::TempDir,
    pub starttls: u16,
    pub smtps: u16,
    process: Option<Child>,
    pub pki: pki::Pki,
}

impl Exim {
    pub fn new() -> Exim {
        let dir = tempdir();
        let d = dir.path();
        let pki = pki::make(&d.join("pki"));
        for sub in ["spool", "log", "mail"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let (starttls, smtps) = (free_port(), free_port());
        chown_all(d, exim_user());
        // Exim wants its configuration owned by root and writable by nobody else.
        std::fs::write(
            d.join("exim.conf"),
            format!(
                r#"primary_hostname = mta.hark.test
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
local_interfaces = 127.0.0.1
daemon_smtp_ports = {starttls} : {smtps}
tls_on_connect_ports = {smtps}
tls_certificate = {cert}
tls_privatekey = {key}
tls_advertise_hosts = *
acl_smtp_rcpt = check_rcpt
host_lookup =
rfc1413_hosts =
begin acl
check_rcpt:
  deny recipients = reject@hark.test
  defer recipients = later@hark.test
  accept
begin routers
all:
  driver = accept
  transport = to_dir
begin transports
to_dir:
  driver = appendfile
  directory = {d}/mail
  maildir_format
  create_directory
  user = {uid}
  group = {gid}
  envelope_to_add
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if and {{{{eq{{$auth2}}{{hark}}}}{{eq{{$auth3}}{{s3cret}}}}}}}}
  server_set_id = $auth2
"#,
                d = d.display(),
                cert = pki.cert.display(),
                key = pki.key.display(),
                uid = exim_user().0,
                gid = exim_user().1,
            ),
        )
        .unwrap();
        chown(d.join("exim.conf"), Some(0), Some(0)).unwrap();
        let mut e = Exim {
            dir,
            starttls,
            smtps,
            process: None,
            pki,
        };
        e.start();
        e
    }

    pub fn start(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join(format!("exim-{}.out", fastrand::u32(..)))).unwrap();
        let child = Command::new("exim4")
            .arg("-C")
            .arg(d.join("exim.conf"))
            .arg("-bdf")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("exim4: install exim4-daemon-light (tests/setup does)");
        self.process = Some(child);
        let up = wait_for(Duration::from_secs(20), || {
            [self.starttls, self.smtps]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        if !up {
            let mut why = String::new();
            for e in std::fs::read_dir(d).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with("exim-") {
                    why.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
            let panic = std::fs::read_to_string(d.join("log/paniclog")).unwrap_or_default();
            panic!("exim did not start: {why}\n{panic}\n{}", self.mainlog());
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.process.take() {
            // SAFETY: kill(2) on the process group of a child started in its own group.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    pub fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default()
    }

    /// Every message delivered, as text.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail/new");
        let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(new)
            .map(|r| {
                r.flatten()
                    .map(|e| {
                        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                        (e.path(), text)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.into_iter().map(|(_, t)| t).collect()
    }

    pub fn wait_messages(&self, n: usize, h: &Hark) -> Vec<String> {
        let ok = wait_for(Duration::from_secs(60), || self.messages().len() >= n);
        assert!(
            ok,
            "{} message(s), want {n}; exim:\n{}\nhark:\n{}",
            self.messages().len(),
            self.mainlog(),
            h.log()
        );
        self.messages()
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        self.stop();
    }
}
