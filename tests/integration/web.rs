//! `[daemon] http`: the status page in a real browser (Debian's chromium, headless) while
//! a rule fires and resolves, `/api/status`, `/metrics` in both formats (Prometheus' own
//! `promtool check metrics` on the text one), and a listener that hostile clients cannot
//! take down: malformed requests, a 1 MB header, 2,000 idle connections (a scrape still
//! gets in while they are held).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::http_server::Server;
use crate::util::*;

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Sends `request` as is and reads the answer until the server closes (or 5 s pass).
fn raw(address: &str, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(address) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(request);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

fn get(address: &str, path: &str, accept: &str) -> String {
    raw(
        address,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// The page's DOM as Chromium sees it, after it loaded.
fn dom(address: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
            &format!("http://{address}/"),
        ])
        .output()
        .expect("run chromium (tests/setup installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start_with(api: &Server, receiver: &Server, address: &str) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &format!(
            "[daemon]\nhttp = \"{address}\"\n\n{}",
            fixture(
                "control/status.toml",
                &[
                    ("@URL@", &api.url("/health")),
                    ("@RECEIVER@", &receiver.url("/hook")),
                ],
            )
        ),
    )
}

/// hark with its HTTP listener, an endpoint answering 500 (the rule fires) and a
/// receiver answering 400 (its delivery fails for good).
fn start_failing() -> (Server, Server, String, Hark) {
    let api = Server::start();
    api.set_status(500);
    let receiver = Server::start();
    receiver.set_status(400);
    let address = free_address();
    let h = start_with(&api, &receiver, &address);
    (api, receiver, address, h)
}

#[test]
fn the_status_page_shows_a_rule_firing_then_resolved_in_a_real_browser() {
    let (api, _receiver, address, h) = start_failing();
    let firing = "data-rule=\"api_down\" data-state=\"firing\"";
    let mut page = String::new();
    let seen = wait_for(Duration::from_secs(30), || {
        page = dom(&address);
        page.contains(firing)
    });
    assert!(
        seen,
        "the page never showed api_down firing:\n{page}\n{}",
        h.log()
    );
    assert!(page.contains("<svg"), "no latency graph:\n{page}");
    // How long, and what: "firing for 2s (since ...): api_down is firing ...".
    let row = page
        .split("data-rule=\"api_down\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(row.contains("firing for "), "{row}");
    assert!(
        h.status()["rules"].as_array().into_iter().flatten().any(
            |r| r["name"] == "api_down" && r["summary"].as_str().is_some_and(|s| !s.is_empty())
        ),
        "{}",
        h.status()
    );
    assert!(
        page.contains("id=\"failed\""),
        "no failed delivery:\n{page}"
    );
    // A screenshot, kept with the test's output.
    let shot = std::env::temp_dir().join("hark-status-page.png");
    let _ = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1100,900",
            &format!("--screenshot={}", shot.display()),
            &format!("http://{address}/"),
        ])
        .output();
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {shot:?}"
    );
    // The endpoint recovers: the page shows the rule ok again.
    api.set_status(200);
    let resolved = "data-rule=\"api_down\" data-state=\"ok\"";
    let seen = wait_for(Duration::from_secs(30), || {
        page = dom(&address);
        page.contains(resolved)
    });
    assert!(seen, "the page never showed api_down resolved:\n{page}");
    assert!(page.contains("http-equiv=\"refresh\""));
}

#[test]
fn api_status_and_metrics_in_both_formats_pass_promtool() {
    let (_api, _receiver, address, h) = start_failing();
    assert!(h.wait_log("delivery failed for good"), "{}", h.log());
    h.signal(libc::SIGHUP);
    assert!(h.wait_log("configuration reloaded"), "{}", h.log());

    let status = get(&address, "/api/status", "*/*");
    let body = status.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(json["pid"], h.child.id());

    let om = get(
        &address,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    );
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    let text = get(&address, "/metrics", "text/plain");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    assert!(body.contains("# HELP hark_events_total "), "{body}");
    assert!(
        body.contains("# HELP hark_store_write_errors_total "),
        "{body}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (tests/setup installs prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // HEAD: the head only; another method: 405 with Allow; another path: 404.
    let head = raw(
        &address,
        b"HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head}");
    let post = raw(
        &address,
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
    assert!(get(&address, "/nope", "*/*").starts_with("HTTP/1.1 404"));
}

#[test]
fn malformed_requests_a_huge_header_and_2000_idle_connections_do_not_take_it_down() {
    let api = Server::start();
    let receiver = Server::start();
    let address = free_address();
    let mut h = start_with(&api, &receiver, &address);
    let pid = h.child.id();

    let garbage = raw(&address, b"\x16\x03\x01\x02\x00 hello\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let bad_line = raw(&address, b"GET\r\n\r\n");
    assert!(
        bad_line.is_empty() || bad_line.starts_with("HTTP/1.1 400"),
        "{bad_line}"
    );
    let mut huge = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend_from_slice(b"\r\n\r\n");
    let big = raw(&address, &huge);
    assert!(
        big.is_empty() || big.starts_with("HTTP/1.1 431"),
        "{}",
        &big[..big.len().min(300)]
    );

    // 2,000 connections that send nothing: at most the listener's limit are held open by
    // hark; `hark status` and the page still answer meanwhile.
    let idle: Vec<TcpStream> = (0..2000)
        .filter_map(|_| TcpStream::connect(&address).ok())
        .collect();
    assert!(idle.len() > 1000, "could not open the idle connections");
    std::thread::sleep(Duration::from_millis(500));
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(
        fds < 400,
        "hark holds {fds} descriptors with 2,000 idle clients"
    );
    let (code, _, err) = h.ctl(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    // A scrape gets in while they are held: the oldest idle one makes room.
    let scrape = get(&address, "/metrics", "text/plain");
    assert!(
        scrape.starts_with("HTTP/1.1 200"),
        "{}",
        &scrape[..scrape.len().min(300)]
    );
    drop(idle);
    let page = get(&address, "/", "text/html");
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "{}",
        &page[..page.len().min(300)]
    );
    assert!(h.child.try_wait().ok().flatten().is_none(), "hark died");
}

#[test]
fn a_loopback_listener_refuses_a_foreign_host_and_answers_its_listed_names() {
    let address = free_address();
    let _h = start(&format!(
        "[daemon]\nhttp = \"{address}\"\nhttp_hosts = [\"status.example.org\"]\n"
    ));
    let with_host = |host: &str| {
        raw(
            &address,
            format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    // A page on another site whose name was made to resolve to 127.0.0.1 (DNS
    // rebinding) sends its own name: refused before anything is read.
    let rebound = with_host("evil.example:80");
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(!rebound.contains("watches"), "{rebound}");
    for ok in [
        "localhost",
        &address,
        "STATUS.example.org:9797",
        "[::1]:9797",
    ] {
        let got = with_host(ok);
        assert!(got.starts_with("HTTP/1.1 200"), "{ok}: {got}");
    }
}
