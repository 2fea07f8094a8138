//! The `email` action against a real MTA: Debian's Exim (exim4-daemon-light; tests/setup
//! installs it), started here in the foreground with its own configuration, spool and
//! maildir in a temp dir, on free loopback ports: STARTTLS with AUTH on one, TLS from the
//! first byte on another, with a certificate from rcgen. Its ACL refuses one recipient
//! for good (550) and defers another (451).

use std::os::unix::fs::{chown, MetadataExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::brokers::free_port;
use crate::pki;
use crate::util::*;

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
struct Exim {
    dir: tempfile::TempDir,
    starttls: u16,
    smtps: u16,
    process: Option<Child>,
    pki: pki::Pki,
}

impl Exim {
    fn new() -> Exim {
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

    fn start(&mut self) {
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

    fn stop(&mut self) {
        if let Some(mut c) = self.process.take() {
            // SAFETY: kill(2) on the process group of a child started in its own group.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    fn mainlog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default()
    }

    /// Every message delivered, as text.
    fn messages(&self) -> Vec<String> {
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

    fn wait_messages(&self, n: usize, h: &Hark) -> Vec<String> {
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

/// The value of header `name` in a message (first occurrence, unfolded).
fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\n\n").next().unwrap_or_default();
    let mut lines = head.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(v) = l.strip_prefix(&format!("{name}: ")) {
            let mut v = v.to_string();
            while let Some(next) = lines.peek().filter(|n| n.starts_with([' ', '\t'])) {
                v.push_str(next);
                lines.next();
            }
            return Some(v);
        }
    }
    None
}

fn hark_with(actions: &str, then: &str) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &format!(
            "[watch.drop]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\n\
             debounce = \"0ms\"\n\n[rule.dropped]\nwatch = \"drop\"\nthen = {then}\n\
             summary = \"{{{{ event.path }}}} appeared\"\n\n{actions}"
        ),
    )
}

fn mail_action(name: &str, smtp: &str, to: &str, ca: &Path, extra: &str) -> String {
    format!(
        "[action.{name}]\ntype = \"email\"\nsmtp = \"{smtp}\"\nfrom = \"hark <hark@hark.test>\"\n\
         to = [\"{to}\"]\nca = \"{}\"\ntimeout = \"5s\"\n{extra}\n",
        ca.display()
    )
}

#[test]
fn a_message_arrives_over_starttls_with_its_subject_body_and_message_id_and_no_injected_header() {
    let exim = Exim::new();
    let action = mail_action(
        "mail",
        &format!("smtp+starttls://127.0.0.1:{}", exim.starttls),
        "ops@hark.test",
        &exim.pki.ca,
        "username = \"hark\"\npassword = \"s3cret\"\nsubject = \"seen: {{ event.path }}\"",
    );
    let h = hark_with(&action, "[\"mail\"]");
    std::fs::write(h.path("in/a1"), "").unwrap();
    let got = exim.wait_messages(1, &h);
    let m = &got[0];
    let path = h.path("in/a1").display().to_string();
    assert_eq!(header(m, "Subject"), Some(format!("seen: {path}")), "{m}");
    assert_eq!(header(m, "From").as_deref(), Some("hark <hark@hark.test>"));
    assert_eq!(header(m, "To").as_deref(), Some("ops@hark.test"));
    let id = header(m, "Message-ID").unwrap_or_default();
    let key = id
        .strip_prefix("<hark.")
        .and_then(|r| r.strip_suffix("@hark.test>"))
        .unwrap_or_default();
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    // The default body: the firing in plain text.
    let body = m.split_once("\n\n").map(|(_, b)| b).unwrap_or_default();
    for want in [
        "Rule:    dropped",
        "State:   firing",
        &format!("{path} appeared"),
    ] {
        assert!(body.contains(want), "{want:?} not in {body}");
    }
    // Sent over TLS, authenticated (Exim's log: X= the cipher, A= the authenticator).
    let log = exim.mainlog();
    assert!(
        log.contains("X=TLS") && log.contains("A=plain:hark"),
        "{log}"
    );

    // A file name holding CR LF and a header of its own adds no header and no recipient.
    std::fs::write(h.path("in/x\r\nBcc: spy@evil.test"), "").unwrap();
    let got = exim.wait_messages(2, &h);
    let m = got
        .iter()
        .find(|m| m.contains("spy@evil.test"))
        .unwrap_or_else(|| panic!("{got:?}"));
    let head = m.split("\n\n").next().unwrap_or_default();
    assert!(
        !head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{head}"
    );
    assert!(
        header(m, "Subject").is_some_and(|s| s.contains("Bcc: spy@evil.test")),
        "{head}"
    );
    assert_eq!(header(m, "Envelope-to").as_deref(), Some("ops@hark.test"));
    assert!(
        !exim.mainlog().contains("=> spy@evil.test"),
        "{}",
        exim.mainlog()
    );
}

#[test]
fn a_message_made_while_the_server_is_down_arrives_once_after_a_sigkill_and_restart() {
    let mut exim = Exim::new();
    exim.stop();
    let action = mail_action(
        "mail",
        &format!("smtps://127.0.0.1:{}", exim.smtps),
        "ops@hark.test",
        &exim.pki.ca,
        "",
    );
    let mut h = hark_with(&action, "[\"mail\"]");
    std::fs::write(h.path("in/b1"), "").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || h.log().contains("retrying in")),
        "{}",
        h.log()
    );
    h.kill_and_restart();
    exim.start();
    let got = exim.wait_messages(1, &h);
    assert!(got[0].contains("/in/b1"), "{}", got[0]);
    // Once: nothing else comes after it was accepted.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(exim.messages().len(), 1, "{:?}", exim.messages());
    let (_, out, _) = h.ctl(&["outbox", "--json"]);
    assert_eq!(out.trim(), "[]", "{out}");
}

#[test]
fn a_5xx_fails_for_good_a_4xx_and_an_untrusted_certificate_are_retried() {
    let exim = Exim::new();
    let smtps = format!("smtps://127.0.0.1:{}", exim.smtps);
    let starttls = format!("smtp+starttls://127.0.0.1:{}", exim.starttls);
    let actions = [
        mail_action("refused", &starttls, "reject@hark.test", &exim.pki.ca, ""),
        mail_action("deferred", &starttls, "later@hark.test", &exim.pki.ca, ""),
        mail_action("untrusted", &smtps, "ops@hark.test", &exim.pki.other_ca, ""),
        mail_action("fine", &smtps, "ops@hark.test", &exim.pki.ca, ""),
    ]
    .concat();
    let h = hark_with(
        &actions,
        "[\"refused\", \"deferred\", \"untrusted\", \"fine\"]",
    );
    std::fs::write(h.path("in/c1"), "").unwrap();
    // The good one arrives, over TLS from the first byte.
    let got = exim.wait_messages(1, &h);
    assert!(got[0].contains("/in/c1"), "{}", got[0]);
    // The 550 is a failure for good, kept and shown.
    let failed = wait_for(Duration::from_secs(20), || {
        let (_, out, _) = h.ctl(&["outbox", "--json"]);
        out.contains("550") && out.contains("refused")
    });
    let (_, out, _) = h.ctl(&["outbox", "--json"]);
    assert!(failed, "{out}\n{}", h.log());
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let by = |a: &str| list.iter().find(|e| e["action"] == a).cloned();
    assert!(
        by("refused").is_some_and(|e| e["failed"].as_str().is_some_and(|f| f.contains("550"))),
        "{out}"
    );
    // The 451 and the certificate no `ca` trusts are pending, tried again and again.
    let retried = |what: &str| {
        h.log()
            .lines()
            .filter(|l| l.contains("retrying in") && l.contains(what))
            .count()
    };
    let ok = wait_for(Duration::from_secs(30), || {
        retried("action=deferred") >= 2 && retried("action=untrusted") >= 2
    });
    assert!(ok, "{}", h.log());
    for a in ["deferred", "untrusted"] {
        assert!(by(a).is_some_and(|e| e["failed"].is_null()), "{a}: {out}");
    }
    let log = h.log();
    assert!(log.contains("451"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("action=untrusted") && l.contains("certificate")),
        "{log}"
    );
    // Nothing but the good one was delivered.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(exim.messages().len(), 1, "{}", exim.mainlog());
}
