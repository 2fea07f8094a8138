//! Webhook actions against a real receiver on 127.0.0.1: payloads that stay valid JSON,
//! secrets, retries, idempotency keys, order, and deliveries that survive a SIGKILL.

use std::time::{Duration, Instant};

use crate::http_server::Server;
use crate::util::*;

/// A daemon posting every file created in `in/` to `server`.
fn start_posting(fixture_name: &str, server: &Server) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    start_in(
        dir,
        &fixture(fixture_name, &[("@URL@", &server.url("/hook"))]),
    )
}

/// The body of a request (after the blank line).
fn body(request: &str) -> &str {
    request.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn wait_requests(server: &Server, n: usize) -> Vec<(u16, String)> {
    wait_for(Duration::from_secs(30), || server.requests().len() >= n);
    server.requests()
}

#[test]
fn hostile_values_arrive_as_valid_json_with_their_types() {
    let server = Server::start();
    let h = start_posting("webhook/file_to_webhook.toml", &server);
    let names: [&[u8]; 5] = [
        b"quote\"double",
        b"back\\slash",
        b"new\nline",
        b"{{ rule }}",
        b"latin1-\xe9-byte",
    ];
    // Written beside and moved in, so each arrives whole: a create of 3 bytes.
    for n in names {
        let outside = h.path("staging");
        std::fs::write(&outside, "xyz").unwrap();
        std::fs::rename(&outside, h.path("in").join(os(n))).unwrap();
    }
    let got = wait_requests(&server, names.len());
    assert_eq!(got.len(), names.len(), "log:\n{}", h.log());
    let mut paths = Vec::new();
    for (_, req) in &got {
        let v: serde_json::Value =
            serde_json::from_str(body(req)).unwrap_or_else(|e| panic!("not JSON ({e}): {req}"));
        assert_eq!(v["size"], 3, "the size keeps its type: {v}");
        assert_eq!(v["nested"]["kind"], "create");
        assert_eq!(v["nested"]["exists"], true);
        let path = v["path"].as_str().unwrap().to_string();
        assert_eq!(v["text"], format!("dropped saw {path}"));
        paths.push(path);
        assert_eq!(header(req, "content-type"), Some("application/json"));
        assert_eq!(
            header(req, "x-token"),
            Some("Bearer s3cret"),
            "the secret is resolved"
        );
        assert_eq!(header(req, "idempotency-key").map(str::len), Some(32));
    }
    paths.sort();
    let dir = h.path("in").to_string_lossy().into_owned();
    let mut want: Vec<String> = names
        .iter()
        .map(|n| format!("{dir}/{}", String::from_utf8_lossy(n)))
        .collect();
    want.sort();
    assert_eq!(paths, want);
    assert!(!h.log().contains("s3cret"), "the secret reached the log");
}

#[test]
fn the_default_payload_is_shaped_like_alertmanagers() {
    let server = Server::start();
    let h = start_posting("webhook/default_payload.toml", &server);
    std::fs::write(h.path("in").join("f"), "x").unwrap();
    let got = wait_requests(&server, 1);
    let v: serde_json::Value = serde_json::from_str(body(&got[0].1)).unwrap();
    let alert = &v["alerts"][0];
    assert_eq!(v["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "dropped");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["team"], "ops");
    let path = h.path("in").join("f").to_string_lossy().into_owned();
    assert_eq!(alert["annotations"]["summary"], format!("{path} appeared"));
    assert_eq!(v["event"]["path"], path.as_str());
}

#[test]
fn a_receiver_that_is_down_gets_the_delivery_once_it_is_up_with_one_key() {
    let server = Server::start();
    server.script(&[503, 502]);
    let h = start_posting("webhook/default_payload.toml", &server);
    std::fs::write(h.path("in").join("f"), "x").unwrap();
    let got = wait_requests(&server, 3);
    let statuses: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [503, 502, 200], "log:\n{}", h.log());
    let keys: Vec<_> = got
        .iter()
        .map(|(_, r)| header(r, "idempotency-key"))
        .collect();
    assert!(
        keys[0].is_some() && keys.iter().all(|k| *k == keys[0]),
        "{keys:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.requests().len(), 3, "delivered twice");
}

#[test]
fn a_4xx_is_a_failed_delivery_and_not_retried() {
    let server = Server::start();
    server.set_status(400);
    let h = start_posting("webhook/default_payload.toml", &server);
    std::fs::write(h.path("in").join("f"), "x").unwrap();
    assert!(h.wait_log("delivery failed for good"), "log:\n{}", h.log());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_429_is_retried_after_its_retry_after() {
    let server = Server::start();
    server.script(&[429]);
    let h = start_posting("webhook/default_payload.toml", &server);
    std::fs::write(h.path("in").join("f"), "x").unwrap();
    assert!(!wait_requests(&server, 1).is_empty());
    let first = Instant::now();
    let got = wait_requests(&server, 2);
    assert_eq!(got.len(), 2, "log:\n{}", h.log());
    assert_eq!(got[1].0, 200);
    // The receiver said `Retry-After: 1`; the backoff alone would be under a second.
    assert!(
        first.elapsed() >= Duration::from_millis(900),
        "{:?}",
        first.elapsed()
    );
}

#[test]
fn deliveries_pending_at_a_sigkill_are_delivered_after_the_restart() {
    let server = Server::start();
    server.set_status(503);
    let mut h = start_posting("webhook/default_payload.toml", &server);
    std::fs::write(h.path("in").join("a"), "x").unwrap();
    std::fs::write(h.path("in").join("b"), "x").unwrap();
    let keys = |reqs: &[(u16, String)]| {
        let mut k: Vec<String> = reqs
            .iter()
            .filter_map(|(_, r)| header(r, "idempotency-key").map(str::to_string))
            .collect();
        k.sort();
        k.dedup();
        k
    };
    // Both accepted (stored); the first attempted, the second queued behind it (one
    // rule's deliveries go in order).
    assert!(wait_for(Duration::from_secs(20), || h
        .log()
        .matches("rule fired")
        .count()
        == 2));
    assert!(!wait_requests(&server, 1).is_empty());
    let before = keys(&server.requests());
    h.kill_and_restart();
    server.set_status(200);
    assert!(
        wait_for(Duration::from_secs(30), || server
            .requests()
            .iter()
            .filter(|(s, _)| *s == 200)
            .count()
            >= 2),
        "log:\n{}",
        h.log()
    );
    let delivered: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(s, _)| *s == 200)
        .collect();
    // Both delivered, each with its own key; the one attempted before the kill kept its key.
    let after = keys(&delivered);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        before.iter().all(|k| after.contains(k)),
        "{before:?} {after:?}"
    );
}

#[test]
fn a_resolve_is_never_delivered_before_its_firing() {
    let api = Server::start();
    let receiver = Server::start();
    api.set_status(500);
    // The firing's delivery fails twice first; the resolve must wait for it.
    receiver.script(&[503, 503]);
    let h = start(&fixture(
        "webhook/check_to_webhook.toml",
        &[
            ("@URL@", &api.url("/")),
            ("@RECEIVER@", &receiver.url("/hook")),
        ],
    ));
    assert!(!wait_requests(&receiver, 1).is_empty());
    api.set_status(200);
    let got = wait_requests(&receiver, 4);
    let states: Vec<(u16, String)> = got
        .iter()
        .map(|(s, r)| {
            let v: serde_json::Value = serde_json::from_str(body(r)).unwrap();
            (*s, v["state"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(
        states,
        [
            (503, "firing".to_string()),
            (503, "firing".to_string()),
            (200, "firing".to_string()),
            (200, "resolved".to_string())
        ],
        "log:\n{}",
        h.log()
    );
}

#[test]
fn sigterm_lets_a_delivery_in_flight_finish_and_it_is_not_made_again() {
    let server = Server::start();
    server.set(|r| r.delay = Duration::from_millis(1500));
    let mut h = start_posting("webhook/default_payload.toml", &server);
    std::fs::write(h.path("in").join("f"), "x").unwrap();
    assert!(wait_for(Duration::from_secs(10), || !server
        .last_request()
        .is_empty()));
    // The receiver has the request and takes its time to answer; hark is asked to stop.
    assert_eq!(h.stop(), Some(0), "log:\n{}", h.log());
    let log = h.log();
    let delivered = log.find("delivered rule=dropped");
    let stopped = log.find("hark stopped");
    assert!(
        delivered.is_some() && delivered < stopped,
        "the delivery in flight was cut off by the stop:\n{log}"
    );
    server.set(|r| r.delay = Duration::ZERO);
    h.restart();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.requests().len(),
        1,
        "delivered again after the restart"
    );
}

/// `ca` and `tls_verify` on a webhook: a receiver whose certificate the named CA signed
/// gets the delivery; with `tls_verify = false` any certificate does; with a `ca` that
/// did not sign it the delivery is retried, never made, and the error names the
/// certificate.
#[test]
fn a_webhook_trusts_only_its_ca_and_names_a_certificate_it_refuses() {
    let dir = tempdir();
    let pki = crate::pki::make(&dir.path().join("pki"));
    let server = Server::start_tls_from(&pki.cert, &pki.key);
    let url = server.url("/hook");
    let action = |name: &str, extra: &str| {
        format!("[action.{name}]\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}\n\n")
    };
    let actions = [
        action("trusted", &format!("ca = \"{}\"", pki.ca.display())),
        action("unchecked", "tls_verify = false"),
        action("untrusted", &format!("ca = \"{}\"", pki.other_ca.display())),
    ]
    .concat();
    let h_dir = tempdir();
    std::fs::create_dir(h_dir.path().join("in")).unwrap();
    let h = start_in(
        h_dir,
        &format!(
            "[watch.drop]\ntype = \"file\"\npaths = [\"@DIR@/in\"]\nevents = [\"create\"]\n\
             debounce = \"0ms\"\n\n[rule.dropped]\nwatch = \"drop\"\n\
             then = [\"trusted\", \"unchecked\", \"untrusted\"]\n\n{actions}"
        ),
    );
    std::fs::write(h.path("in/a"), "").unwrap();
    let got = wait_requests(&server, 2);
    assert_eq!(got.len(), 2, "{got:?}\n{}", h.log());
    let retried = || {
        h.log()
            .lines()
            .filter(|l| l.contains("action=untrusted") && l.contains("retrying in"))
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(20), || retried() >= 2),
        "{}",
        h.log()
    );
    let log = h.log();
    let line = log
        .lines()
        .find(|l| l.contains("action=untrusted") && l.contains("retrying in"))
        .unwrap_or_default();
    assert!(
        line.contains("hark test server") && line.contains("hark test CA"),
        "the refused certificate is not named: {line}"
    );
    assert_eq!(server.hits(), 2, "the untrusted delivery was made");
}
