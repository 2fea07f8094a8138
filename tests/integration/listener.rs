//! The listener opened to other machines: pushes with curl (with and without a token,
//! over TLS with a test CA), a client certificate, Prometheus scraping `/metrics` over
//! TLS with basic auth, the API's silence round trip, a maintenance window, a renewed
//! certificate taken up without a restart, and per-token rates.

use std::process::Command;
use std::time::Duration;

use crate::pki;
use crate::util::*;

const PUSH: &str = "push-token-0123456789abcdef";
const OPS: &str = "ops-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// curl with `args`: the status code and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (tests/setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.trim_end().to_string(),
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// A push watch `job`, a rule on its failures that records kind, exit code and a body
/// field, tokens `ops` (read, write) and `reader` (read).
fn config(daemon: &str, rule_extra: &str) -> String {
    format!(
        "{daemon}\n\
         [token.ops]\nsecret = \"{OPS}\"\nscopes = [\"read\", \"write\"]\n\n\
         [token.reader]\nsecret = \"{READER}\"\nscopes = [\"read\"]\nrate_limit = 5\n\n\
         [watch.job]\ntype = \"push\"\ntoken = \"{PUSH}\"\nmax_body = \"1KiB\"\n\n\
         [rule.job_failed]\nwatch = \"job\"\nwhen = 'kind == \"fail\"'\nthen = [\"rec\"]\n{rule_extra}\n\n\
         [action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv(
            "@DIR@/out",
            &["{{ event.kind }}", "{{ event.exit_code }}", "{{ event.size }}", "{{ event.client }}"]
        )
    )
}

#[test]
fn pushes_over_tls_need_the_token_and_make_events_a_rule_acts_on() {
    let dir = tempdir();
    let pki = pki::make(&dir.path().join("pki"));
    let port = free_port();
    let daemon = format!(
        "[daemon]\n[daemon.http]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        pki.cert.display(),
        pki.key.display()
    );
    let h = Start::new(&config(&daemon, "")).dir(dir).run();
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let ca = pki.ca.to_string_lossy().into_owned();
    let tls = |extra: &[&str]| {
        let mut a = vec!["--cacert", ca.as_str()];
        a.extend_from_slice(extra);
        curl(&a)
    };

    // No token, a wrong one, a name that is no push watch: the same 401, naming nothing.
    let (code, body) = tls(&[&url("/push/job/fail")]);
    assert_eq!((code, body.as_str()), (401, "unauthorized"));
    let (code, _) = tls(&[
        "-H",
        &bearer("wrong-token-0123456789abcdef"),
        &url("/push/job"),
    ]);
    assert_eq!(code, 401);
    let (code, body) = tls(&["-H", &bearer(PUSH), &url("/push/nope/fail")]);
    assert_eq!((code, body.as_str()), (401, "unauthorized"));
    // The API's tokens have no `push` scope.
    let (code, _) = tls(&["-H", &bearer(OPS), &url("/push/job/fail")]);
    assert_eq!(code, 401);

    // With the token (a header, or ?token= for clients that cannot set one).
    let (code, body) = tls(&[
        "-H",
        &bearer(PUSH),
        "-d",
        r#"{"size": 42}"#,
        &url("/push/job/3"),
    ]);
    assert_eq!((code, body.as_str()), (200, "OK"));
    let (code, _) = tls(&[&url(&format!("/push/job/fail?token={PUSH}&size=7"))]);
    assert_eq!(code, 200);
    // A success is heard but does not match the rule.
    let (code, _) = tls(&["-H", &bearer(PUSH), &url("/push/job")]);
    assert_eq!(code, 200);
    // (An empty value, the exit code of /fail, is no record.)
    let got = wait_records(&h.path("out"), 7);
    assert_eq!(
        got,
        ["fail", "3", "42", "127.0.0.1", "fail", "7", "127.0.0.1"].map(|s| s.as_bytes().to_vec())
    );

    // A body over the watch's cap: 413, no event.
    let big = "x".repeat(2048);
    let (code, _) = tls(&["-H", &bearer(PUSH), "-d", &big, &url("/push/job/fail")]);
    assert_eq!(code, 413);
    // Plain HTTP on a TLS listener gets no answer.
    let (code, _) = curl(&[&format!("http://127.0.0.1:{port}/push/job")]);
    assert_eq!(code, 0);

    let (code, metrics) = tls(&["-H", &bearer(READER), &url("/metrics")]);
    assert_eq!(code, 200);
    let count = |reason: &str| -> f64 {
        let key = format!("hark_http_refused_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("unauthorized") >= 4.0, "{metrics}");
    assert_eq!(count("too_large"), 1.0, "{metrics}");
    assert!(count("tls_handshake") >= 1.0, "{metrics}");
    let events = h.status()["watches"][0]["events"].as_u64();
    assert_eq!(
        events,
        Some(3),
        "only the three pushes answered 200 made events"
    );
    // Logged once a minute per address, not once per refusal.
    let said = h.log().matches("without valid credentials").count();
    assert_eq!(said, 1, "{}", h.log());
}

#[test]
fn a_client_certificate_reads_and_a_client_without_one_is_refused_at_the_handshake() {
    let dir = tempdir();
    let pki_dir = dir.path().join("pki");
    let pki = pki::make(&pki_dir);
    let (cert, key) = pki::client(&pki_dir, "scraper");
    let port = free_port();
    let daemon = format!(
        "[daemon]\n[daemon.http]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
        pki.cert.display(),
        pki.key.display(),
        pki_dir.join("client-ca.pem").display()
    );
    let _h = Start::new(&config(&daemon, "")).dir(dir).run();
    let url = format!("https://localhost:{port}/api/v1/rules");
    let ca = pki.ca.to_string_lossy().into_owned();
    let (code, _) = curl(&["--cacert", &ca, &url]);
    assert_eq!(code, 0, "no client certificate: no TLS session");
    let (c, k) = (cert.to_string_lossy(), key.to_string_lossy());
    let (code, body) = curl(&["--cacert", &ca, "--cert", &c, "--key", &k, &url]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("job_failed"), "{body}");
    // A certificate reads; it does not write.
    let silence = [
        "--cacert",
        &ca,
        "--cert",
        &c,
        "--key",
        &k,
        "-d",
        r#"{"rule":"job_failed"}"#,
    ];
    let (code, _) = curl(
        &[
            &silence[..],
            &[&format!("https://localhost:{port}/api/v1/silences")],
        ]
        .concat(),
    );
    assert_eq!(code, 403);
}

#[test]
fn prometheus_scrapes_metrics_over_tls_with_basic_auth() {
    let dir = tempdir();
    let pki = pki::make(&dir.path().join("pki"));
    let port = free_port();
    let hash = bcrypt::hash("scrape-pass", 4).unwrap();
    let daemon = format!(
        "[daemon]\n[daemon.http]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         [daemon.http.basic_auth_users]\nprometheus = \"{hash}\"\n",
        pki.cert.display(),
        pki.key.display()
    );
    let h = Start::new(&config(&daemon, "")).dir(dir).run();
    let url = format!("https://localhost:{port}/metrics");
    let ca = pki.ca.to_string_lossy().into_owned();
    // With a user configured, nothing is open, not even on loopback.
    assert_eq!(curl(&["--cacert", &ca, &url]).0, 401);
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "prometheus:wrong", &url]).0,
        401
    );
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "prometheus:scrape-pass", &url]).0,
        200
    );

    let prom_dir = h.path("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_port = free_port();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hark\n    scheme: https\n\
             \x20   tls_config:\n      ca_file: {}\n      server_name: localhost\n\
             \x20   basic_auth:\n      username: prometheus\n      password: scrape-pass\n\
             \x20   static_configs:\n      - targets: ['localhost:{port}']\n",
            pki.ca.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(prom_dir.join("log")).unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            prom_dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            prom_dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run prometheus (tests/setup installs it)");
    let query = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=hark_build_info");
    let scraped = wait_for(Duration::from_secs(40), || {
        curl(&[&query]).1.contains("\"job\":\"hark\"")
    });
    let up = curl(&[&format!("http://127.0.0.1:{prom_port}/api/v1/targets")]).1;
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(
        scraped,
        "Prometheus did not scrape hark: {up}\n{}",
        std::fs::read_to_string(prom_dir.join("log")).unwrap_or_default()
    );
}

#[test]
fn the_api_silences_a_rule_says_who_and_why_and_unsilences_it() {
    let port = free_port();
    let daemon = format!("[daemon]\nhttp = \"127.0.0.1:{port}\"\n");
    let h = start(&config(&daemon, ""));
    let api = |p: &str| format!("http://127.0.0.1:{port}/api/v1/{p}");
    let push = format!("http://127.0.0.1:{port}/push/job/fail?token={PUSH}");

    // The API is not open on loopback: a token is needed, and `write` for a write.
    assert_eq!(curl(&[&api("rules")]).0, 401);
    let post = |token: &str, body: &str| {
        curl(&[
            "-H",
            &bearer(token),
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &api("silences"),
        ])
    };
    assert_eq!(post(READER, r#"{"rule":"job_failed"}"#).0, 403);
    let (code, body) = post(OPS, r#"{"rule":"job_faild","duration":"1h"}"#);
    assert_eq!(code, 400);
    assert!(body.contains("job_failed"), "the names that exist: {body}");
    let (code, body) = post(
        OPS,
        r#"{"rule":"job_failed","duration":"1h","comment":"deploy 42"}"#,
    );
    assert_eq!(code, 201, "{body}");

    let (_, rules) = curl(&["-H", &bearer(READER), &api("rules")]);
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let row = &rules["rules"][0];
    assert_eq!(row["silence_comment"], "deploy 42", "{rules}");
    let by = row["silenced_by"].as_str().unwrap_or_default();
    assert!(by.starts_with("token ops from 127.0.0.1:"), "{by}");
    let (code, explain) = curl(&["-H", &bearer(READER), &api("rules/job_failed")]);
    assert_eq!(code, 200);
    assert!(explain.contains("silenced_until"), "{explain}");
    assert_eq!(curl(&["-H", &bearer(READER), &api("rules/nope")]).0, 404);

    // Silenced: the push is heard, the action does not run.
    assert_eq!(curl(&[&push]).0, 200);
    assert!(h.wait_log("its actions do not run"));
    let (code, _) = curl(&[
        "-X",
        "DELETE",
        "-H",
        &bearer(OPS),
        &api("silences/job_failed"),
    ]);
    assert_eq!(code, 200);
    assert_eq!(
        curl(&[
            "-X",
            "DELETE",
            "-H",
            &bearer(OPS),
            &api("silences/job_failed")
        ])
        .0,
        404
    );
    assert_eq!(curl(&[&push]).0, 200);
    // kind and client (no exit code, no size): one firing acted on.
    assert_eq!(
        wait_records(&h.path("out"), 2).len(),
        2,
        "one firing acted on"
    );

    // Each write is in the log and in `hark status`, with the token and the address.
    let status = h.status();
    let changes = status["changes"].as_array().cloned().unwrap_or_default();
    let whats: Vec<&str> = changes.iter().filter_map(|c| c["what"].as_str()).collect();
    assert_eq!(whats.len(), 2, "{changes:?}");
    assert!(
        whats[0].starts_with("silenced rule `job_failed` until "),
        "{whats:?}"
    );
    assert_eq!(whats[1], "unsilenced rule `job_failed`");
    assert!(changes.iter().all(|c| c["by"]
        .as_str()
        .unwrap_or("")
        .starts_with("token ops from 127.0.0.1:")));
    let (_, text, _) = h.ctl(&["status"]);
    assert!(text.contains("token ops from 127.0.0.1:"), "{text}");

    // The outbox through the API: nothing in it; an unknown delivery is 404.
    let (code, outbox) = curl(&["-H", &bearer(READER), &api("outbox")]);
    assert_eq!(code, 200);
    assert!(outbox.contains("\"deliveries\": []"), "{outbox}");
    assert_eq!(
        curl(&["-X", "POST", "-H", &bearer(OPS), &api("outbox/99/drop")]).0,
        404
    );
}

#[test]
fn a_maintenance_window_holds_a_firing_and_lets_it_fire_when_it_ends() {
    let port = free_port();
    let now = std::time::SystemTime::now();
    let from = humantime::format_rfc3339(now - Duration::from_secs(60)).to_string();
    let until = humantime::format_rfc3339(now + Duration::from_secs(6)).to_string();
    let daemon = format!(
        "[daemon]\nhttp = \"127.0.0.1:{port}\"\n\n\
         [maintenance.deploy]\nrules = [\"job_*\"]\nfrom = \"{from}\"\nuntil = \"{until}\"\n"
    );
    // The rule stays firing until resolved (an hour later).
    let h = start(&config(&daemon, "resolve_after = \"1h\""));
    let push = format!("http://127.0.0.1:{port}/push/job/fail?token={PUSH}&size=1");
    assert_eq!(curl(&[&push]).0, 200);
    assert!(h.wait_log("in a maintenance window"));
    let row = h.status()["rules"][0].clone();
    assert!(
        row["maintenance"]
            .as_str()
            .unwrap_or("")
            .starts_with("deploy until "),
        "{row}"
    );
    assert_eq!(h.status()["maintenance"][0]["name"], "deploy");
    assert!(
        records(&h.path("out")).is_empty(),
        "no action inside the window"
    );
    // At the window's end the rule still fires: its actions run then.
    // kind, size and client (no exit code).
    let got = wait_records(&h.path("out"), 3);
    assert_eq!(got.len(), 3, "{}", h.log());
    assert!(
        std::time::SystemTime::now() >= now + Duration::from_secs(6),
        "ran only after the window"
    );
}

#[test]
fn a_token_over_its_rate_waits_and_another_token_is_not_slowed() {
    let port = free_port();
    let h = start(&config(
        &format!("[daemon]\nhttp = \"127.0.0.1:{port}\"\n"),
        "",
    ));
    let url = format!("http://127.0.0.1:{port}/api/v1/rules");
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(curl(&["-H", &bearer(READER), &url]).0);
    }
    assert!(codes.contains(&429), "{codes:?}");
    let out = Command::new("curl")
        .args(["-s", "-i", "-H", &bearer(READER), &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(curl(&["-H", &bearer(OPS), &url]).0, 200);
    drop(h);
}

#[test]
fn a_renewed_certificate_is_taken_up_and_an_expired_one_is_refused_keeping_the_old() {
    let dir = tempdir();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let first = pki::server(&pki_dir, "first", -1, 30);
    let live_cert = pki_dir.join("live.pem");
    let live_key = pki_dir.join("live.key");
    std::fs::copy(&first.cert, &live_cert).unwrap();
    std::fs::copy(&first.key, &live_key).unwrap();
    let port = free_port();
    let daemon = format!(
        "[daemon]\n[daemon.http]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nanonymous = [\"metrics\"]\n",
        live_cert.display(),
        live_key.display()
    );
    let h = Start::new(&config(&daemon, "")).dir(dir).run();
    let url = format!("https://localhost:{port}/metrics");
    let trusts = |ca: &std::path::Path| curl(&["--cacert", &ca.to_string_lossy(), &url]).0 == 200;
    assert!(trusts(&first.ca));

    // Renewed as certbot does: new files renamed over the old ones.
    let second = pki::server(&pki_dir, "second", -1, 90);
    let swap = |cert: &std::path::Path, key: &std::path::Path| {
        std::fs::copy(key, pki_dir.join("next.key")).unwrap();
        std::fs::rename(pki_dir.join("next.key"), &live_key).unwrap();
        std::fs::copy(cert, pki_dir.join("next.pem")).unwrap();
        std::fs::rename(pki_dir.join("next.pem"), &live_cert).unwrap();
    };
    swap(&second.cert, &second.key);
    assert!(
        wait_for(Duration::from_secs(15), || trusts(&second.ca)),
        "{}",
        h.log()
    );
    assert!(!trusts(&first.ca));

    // An expired one: the one in use stays, the error is logged and shown.
    let expired = pki::server(&pki_dir, "expired", -30, -1);
    swap(&expired.cert, &expired.key);
    assert!(wait_for(Duration::from_secs(15), || h
        .log()
        .contains("TLS certificate not loaded")));
    assert!(trusts(&second.ca));
    let problems = h.status()["listener_problems"].to_string();
    assert!(problems.contains("expired"), "{problems}");
}

/// One push over a connection of its own: the status code (0 when none came).
fn raw_push(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    match s.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

#[test]
fn a_thousand_pushes_a_second_from_a_hundred_clients_are_each_taken_or_refused_with_503() {
    let port = free_port();
    let config = format!(
        "[daemon]\nhttp = \"127.0.0.1:{port}\"\n\n\
         [watch.load]\ntype = \"push\"\ntoken = \"{PUSH}\"\nrate_limit = 100000\n\n\
         [rule.seen]\nwatch = \"load\"\nwhen = 'kind == \"fail\"'\nthen = []\n"
    );
    let h = start(&config);
    // 100 clients, each 20 pushes 100 ms apart: 1,000 a second for 2 seconds.
    let clients: Vec<_> = (0..100)
        .map(|c| {
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut codes = Vec::new();
                for i in 0..20u32 {
                    let due = Duration::from_millis(100 * u64::from(i));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    codes.push(raw_push(
                        port,
                        &format!("/push/load?token={PUSH}&c={c}&i={i}"),
                    ));
                }
                codes
            })
        })
        .collect();
    let codes: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let ok = codes.iter().filter(|c| **c == 200).count();
    let full = codes.iter().filter(|c| **c == 503).count();
    assert_eq!(ok + full, 2000, "each push answered 200 or 503: {:?}", {
        let mut other: Vec<_> = codes.iter().filter(|c| **c != 200 && **c != 503).collect();
        other.sort();
        other.dedup();
        other
    });
    assert!(ok > 0);
    // Every push answered 200 became an event, and only those.
    let events = || h.status()["watches"][0]["events"].as_u64().unwrap_or(0);
    wait_for(Duration::from_secs(10), || events() >= ok as u64);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(events(), ok as u64, "{full} refused with 503");
}

/// docs/openapi.json: valid against the OpenAPI 3.0 schema (Debian's
/// openapi-specification, with python3-jsonschema), it names every route of the API, and
/// each request it documents, sent to a running hark, gets an answer it lists.
#[test]
fn the_openapi_file_is_valid_and_each_request_it_documents_gets_a_documented_answer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc_path = root.join("docs/openapi.json");
    let check = Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open('/usr/share/openapi-specification/schemas/v3.0/schema.json'))\n\
             doc = json.load(open(sys.argv[1]))\n\
             errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc))\n\
             for e in errors: print(e.message, list(e.absolute_path))\n\
             sys.exit(1 if errors else 0)",
        ])
        .arg(&doc_path)
        .output()
        .expect("run python3 (tests/setup installs python3-jsonschema)");
    assert!(
        check.status.success(),
        "docs/openapi.json is not valid OpenAPI 3.0:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&doc_path).unwrap()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut operations: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    operations.sort();
    let expected = [
        ("DELETE", "/api/v1/silences/{name}"),
        ("GET", "/api/v1/maintenance"),
        ("GET", "/api/v1/outbox"),
        ("GET", "/api/v1/rules"),
        ("GET", "/api/v1/rules/{name}"),
        ("POST", "/api/v1/outbox/{id}/drop"),
        ("POST", "/api/v1/outbox/{id}/retry"),
        ("POST", "/api/v1/silences"),
    ]
    .map(|(m, p)| (m.to_string(), p.to_string()));
    assert_eq!(operations, expected, "the routes of src/daemon/web/api.rs");

    let port = free_port();
    let h = start(&config(
        &format!("[daemon]\nhttp = \"127.0.0.1:{port}\"\n"),
        "",
    ));
    let params = &doc["components"]["parameters"];
    for (method, path) in &operations {
        let op = &doc["paths"][path.as_str()][method.to_lowercase().as_str()];
        let mut url = path.clone();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .unwrap();
            let param = &params[name];
            let value = match &param["example"] {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            url = url.replace(&format!("{{{}}}", param["name"].as_str().unwrap()), &value);
        }
        let body = op["requestBody"]["content"]["application/json"]["example"].to_string();
        let mut args = vec!["-X", method.as_str(), "-H", "Authorization: Bearer "];
        let auth = format!("Authorization: Bearer {OPS}");
        args[3] = &auth;
        if body != "null" {
            args.extend(["-H", "Content-Type: application/json", "-d", &body]);
        }
        let target = format!("http://127.0.0.1:{port}{url}");
        args.push(&target);
        let (code, answer) = curl(&args);
        let listed = op["responses"].get(code.to_string()).is_some();
        assert!(
            listed,
            "{method} {url}: {code} is not among its documented answers: {answer}"
        );
        assert!(code < 500, "{method} {url}: {code} {answer}");
        let (code, _) = curl(&["-X", method.as_str(), &target]);
        assert_eq!(code, 401, "{method} {url} without a token");
        assert!(op["responses"].get("401").is_some());
    }
    drop(h);
}
