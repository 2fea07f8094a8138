//! The `email` action against a real MTA: Debian's Exim (exim4-daemon-light; tests/setup
//! installs it), started here in the foreground with its own configuration, spool and
//! maildir in a temp dir, on free loopback ports: STARTTLS with AUTH on one, TLS from the
//! first byte on another, with a certificate from rcgen. Its ACL refuses one recipient
//! for good (550) and defers another (451).

use std::path::Path;
use std::time::Duration;

use crate::support::exim::Exim;
use crate::util::*;

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
