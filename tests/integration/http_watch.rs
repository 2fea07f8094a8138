//! The http watch's event fields against a local server: JSON bodies, headers, failures,
//! deadlines, size caps and certificate expiry.

use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

/// Runs `fields.toml` against `url` until the rule has fired once; returns the record.
fn first_record(url: &str, when: &str, record: &str, extra: &[(&str, &str)]) -> String {
    let mut replace = vec![
        ("@URL@", url),
        ("@WHEN@", when),
        ("@RECORD@", record),
        ("@TIMEOUT@", "2s"),
        ("@MAX_BODY@", "64KiB"),
        ("@TLS_VERIFY@", "true"),
    ];
    for (k, v) in extra {
        replace.retain(|(key, _)| key != k);
        replace.push((k, v));
    }
    let h = start(&fixture("http/fields.toml", &replace));
    assert!(
        wait_for(Duration::from_secs(20), || !records(&h.path("out"))
            .is_empty()),
        "the rule never fired; log:\n{}",
        h.log()
    );
    String::from_utf8_lossy(&records(&h.path("out"))[0]).into_owned()
}

#[test]
fn conditions_read_fields_of_a_json_body_and_headers() {
    let server = Server::start();
    server.set(|r| {
        r.body = br#"{"status": "degraded", "queue": {"depth": 120}}"#.to_vec();
        r.content_type = "application/json";
    });
    let got = first_record(
        &server.url("/"),
        r#"json.status == "degraded" && json.queue.depth > 100"#,
        r#"{{ event.json.queue.depth }} {{ event.headers["x-test"] }} {{ event.headers["content-type"] }}"#,
        &[],
    );
    assert_eq!(got, "120 a, b application/json");
}

#[test]
fn connection_refused_is_a_failed_check_with_status_0() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let got = first_record(
        &format!("http://127.0.0.1:{port}/"),
        "!ok",
        "{{ event.ok }} {{ event.status }} {{ event.error }}",
        &[],
    );
    assert!(got.starts_with("False 0 connect: "), "{got}");
    assert!(got.to_lowercase().contains("refused"), "{got}");
}

#[test]
fn a_target_slower_than_timeout_fails_at_the_deadline() {
    let server = Server::start();
    server.set(|r| r.delay = Duration::from_secs(3));
    let got = first_record(
        &server.url("/"),
        "!ok",
        "{{ event.ok }} {{ event.status }} {{ event.latency_ms }} {{ event.error }}",
        &[("@TIMEOUT@", "300ms")],
    );
    let parts: Vec<&str> = got.splitn(4, ' ').collect();
    assert_eq!(&parts[..2], ["False", "0"], "{got}");
    let latency: f64 = parts[2].parse().unwrap();
    assert!(
        (300.0..2900.0).contains(&latency),
        "latency {latency} ms: the deadline was not kept"
    );
    assert_eq!(parts[3], "timed out after 300ms");
}

#[test]
fn checks_of_one_watch_never_overlap() {
    let server = Server::start();
    // Each answer takes 5 checks' worth of interval.
    server.set(|r| r.delay = Duration::from_millis(500));
    let h = start(&fixture(
        "http/fields.toml",
        &[
            ("@URL@", &server.url("/")),
            ("@WHEN@", "false"),
            ("@RECORD@", ""),
            ("@TIMEOUT@", "5s"),
            ("@MAX_BODY@", "64KiB"),
            ("@TLS_VERIFY@", "true"),
        ],
    ));
    assert!(server.wait_hits(0, 4), "log:\n{}", h.log());
    assert_eq!(server.max_in_flight(), 1);
}

#[test]
fn a_body_larger_than_max_body_is_cut_and_not_downloaded_whole() {
    let server = Server::start();
    server.set(|r| r.body = vec![b'x'; 1 << 20]);
    let got = first_record(
        &server.url("/"),
        "ok",
        "{{ event.status }} {{ event.body | length }} {{ event.body_truncated }}",
        &[("@MAX_BODY@", "1KiB")],
    );
    assert_eq!(got, "200 1024 True");
}

#[test]
fn cert_expiry_days_reads_the_served_certificate() {
    let server = Server::start_tls(10);
    let got = first_record(
        &server.url("/"),
        "ok",
        "{{ event.status }} {{ event.cert_expiry_days }}",
        &[("@TLS_VERIFY@", "false")],
    );
    let (status, days) = got.split_once(' ').unwrap();
    assert_eq!(status, "200");
    let days: f64 = days.parse().unwrap();
    assert!((9.9..=10.0).contains(&days), "{days}");
}

#[test]
fn an_untrusted_certificate_fails_the_check_when_tls_verify_is_on() {
    let server = Server::start_tls(10);
    let got = first_record(
        &server.url("/"),
        "!ok",
        "{{ event.status }} {{ event.error }}",
        &[],
    );
    assert!(got.starts_with("0 "), "{got}");
    assert!(got.to_lowercase().contains("certificate"), "{got}");
}

/// The first status `request.toml` records against `server` with `follow_redirects`.
fn status_with_redirects(server: &Server, follow: &str) -> String {
    let h = start(&fixture(
        "http/request.toml",
        &[("@URL@", &server.url("/start")), ("@FOLLOW@", follow)],
    ));
    assert!(
        wait_for(Duration::from_secs(20), || !records(&h.path("out"))
            .is_empty()),
        "log:\n{}",
        h.log()
    );
    String::from_utf8_lossy(&records(&h.path("out"))[0]).into_owned()
}

#[test]
fn the_request_carries_its_method_headers_and_body() {
    let server = Server::start();
    assert_eq!(status_with_redirects(&server, "false"), "200");
    let req = server.last_request();
    assert!(req.starts_with("POST /start HTTP/1.1\r\n"), "{req}");
    let lower = req.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-token: s3cret\r\n"), "{req}");
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{req}"
    );
    assert!(req.ends_with("\r\n\r\n{\"probe\": true}"), "{req}");
}

#[test]
fn redirects_are_reported_unless_followed() {
    let server = Server::start();
    server.set(|r| r.redirect_to = Some("/final"));
    assert_eq!(status_with_redirects(&server, "false"), "302");
    assert_eq!(status_with_redirects(&server, "true"), "200");
    // Followed to /final (any request: a later check may already have asked /start
    // again, so the last one is not always /final; seen once in CI).
    let requests = server.requests();
    assert!(
        requests.iter().any(|(_, r)| r.contains(" /final ")),
        "{requests:?}"
    );
}

#[test]
fn a_slow_target_delays_only_its_own_checks() {
    let slow = Server::start();
    let fast = Server::start();
    slow.set(|r| r.delay = Duration::from_secs(10));
    let h = start(&fixture(
        "http/two_targets.toml",
        &[("@SLOW@", &slow.url("/")), ("@FAST@", &fast.url("/"))],
    ));
    // Ten fast checks take about a second: all inside the slow one's first answer.
    assert!(fast.wait_hits(0, 10), "log:\n{}", h.log());
    assert_eq!(slow.hits(), 0, "the slow target answered already");
}
