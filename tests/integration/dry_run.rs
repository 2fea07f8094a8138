//! `hark test`: verdicts and rendered actions, with nothing executed.

use std::process::Command;

use crate::http_server::Server;
use crate::util::*;

fn hark_test(config: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let (code, out, err, executed) = hark_test_in(config, args);
    assert!(
        executed.is_empty(),
        "hark test executed an action: {executed:?}"
    );
    (code, out, err)
}

/// Runs `hark test`; returns its exit code, stdout, stderr and what actions recorded.
fn hark_test_in(config: &str, args: &[&str]) -> (Option<i32>, String, String, Vec<String>) {
    let dir = tempdir();
    let file = dir.path().join("hark.toml");
    std::fs::write(
        &file,
        config.replace("@DIR@", &dir.path().to_string_lossy()),
    )
    .unwrap();
    let out = Command::new(HARK)
        .arg("test")
        .arg("-c")
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    let executed = records(&dir.path().join("out"))
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r).into_owned())
        .collect();
    assert!(
        !dir.path().join("state").exists(),
        "hark test wrote rule state"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        executed,
    )
}

#[test]
fn a_synthetic_event_shows_the_verdict_and_the_rendered_actions() {
    let cfg = with_state_dir(&fixture(
        "http/api_down.toml",
        &[("@URL@", "http://127.0.0.1:9/")],
    ));
    let (code, out, err) = hark_test(&cfg, &["--event", "api status=503 ok=true"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("rule `api_down`: matches; pending 1/3"),
        "{out}"
    );
    assert!(
        out.contains(r#"["/bin/sh", "-c", "printf \"%s\\0\" \"$@\" >> \"$0\""#),
        "{out}"
    );
    assert!(out.contains("api_down firing 1 503"), "{out}");
    assert!(out.contains("api_down resolved 1 503"), "{out}");
}

#[test]
fn without_an_event_every_http_watch_is_sampled_once() {
    let server = Server::start();
    server.set_status(502);
    let cfg = with_state_dir(&fixture(
        "http/api_down.toml",
        &[("@URL@", &server.url("/"))],
    ));
    let (code, out, err) = hark_test(&cfg, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.hits(), 1);
    assert!(out.contains(r#""status":502"#), "{out}");
    assert!(
        out.contains("rule `api_down`: matches; pending 1/3"),
        "{out}"
    );
}

#[test]
fn an_event_for_an_unknown_watch_is_a_usage_error() {
    let cfg = with_state_dir(&fixture(
        "http/api_down.toml",
        &[("@URL@", "http://127.0.0.1:9/")],
    ));
    let (code, _, err) = hark_test(&cfg, &["--event", "nope status=1"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no watch named `nope` (defined: api)"),
        "{err}"
    );
}

#[test]
fn execute_runs_the_actions_of_the_rules_that_fire() {
    let cfg = with_state_dir(&fixture(
        "http/restart.toml",
        &[("@URL@", "http://127.0.0.1:9/")],
    ));
    let (code, out, err, executed) =
        hark_test_in(&cfg, &["--event", "api status=500 ok=true", "--execute"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("rule `api_down`: matches; fires"), "{out}");
    assert_eq!(executed, vec!["api_down firing 1 500"]);
}

#[test]
fn a_double_field_compares_with_an_int_literal() {
    let cfg = with_state_dir(&fixture(
        "http/fields.toml",
        &[
            ("@URL@", "http://127.0.0.1:9/"),
            ("@WHEN@", "latency_ms > 500"),
            ("@RECORD@", "{{ event.latency_ms }}"),
            ("@TIMEOUT@", "1s"),
            ("@MAX_BODY@", "1KiB"),
            ("@TLS_VERIFY@", "true"),
        ],
    ));
    let (_, slow, _) = hark_test(&cfg, &["--event", "api latency_ms=500.5"]);
    assert!(slow.contains("rule `seen`: matches; fires"), "{slow}");
    let (_, fast, _) = hark_test(&cfg, &["--event", "api latency_ms=499.9"]);
    assert!(fast.contains("rule `seen`: does not match"), "{fast}");
}

#[test]
fn a_cause_is_evaluated_before_the_rule_that_names_it_in_unless() {
    let cfg = with_state_dir(&fixture("http/same_event_unless.toml", &[]));
    let (code, out, err) = hark_test(&cfg, &["--event", "api status=503 ok=true"]);
    assert_eq!(code, Some(0), "{err}");
    let z = out.find("rule `z_cause`: matches; fires").expect(&out);
    let a = out
        .find("rule `a_dependent`: matches; threshold met, suppressed by `unless`")
        .expect(&out);
    assert!(z < a, "{out}");
}

#[test]
fn a_synthetic_process_exit_is_an_edge_and_a_sample_a_state() {
    let cfg = with_state_dir(&fixture("process/pidfile.toml", &[]));
    let (code, out, err) = hark_test(&cfg, &["--event", "app kind=exit pid=42 count=0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("rule `app_changed`: matches; fires"), "{out}");
    let (_, out, _) = hark_test(&cfg, &["--event", "app kind=sample count=0"]);
    assert!(out.contains("rule `app_down`: matches; fires"), "{out}");
    assert!(
        out.contains("rule `app_changed`: does not match; ok"),
        "{out}"
    );
}

#[test]
fn execute_fires_a_debounced_rule_at_once_as_the_readme_example_would() {
    // The README's first rule, with a recorder for its action.
    let cfg = with_state_dir(&format!(
        "[watch.nginx_conf]\ntype = \"file\"\npaths = [\"@DIR@/nginx/**/*.conf\"]\ndebounce = \"200ms\"\n\n\
         [rule.nginx_reload]\nwatch = \"nginx_conf\"\nwhen = 'exists && !path.endsWith(\".dpkg-new\")'\n\
         then = [\"check_and_reload\"]\ndebounce = \"1s\"\ncooldown = \"10s\"\n\n\
         [action.check_and_reload]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv("@DIR@/out", &["{{ rule }}", "{{ last.kind }}", "{{ count }}"])
    ));
    let (code, out, err, executed) = hark_test_in(
        &cfg,
        &[
            "--event",
            "nginx_conf kind=modify path=/etc/nginx/nginx.conf exists=true",
            "--execute",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("in a test it fires at once"), "{out}");
    assert_eq!(
        executed,
        vec!["nginx_reload", "modify", "1"],
        "{out}\n{err}"
    );
}
