//! `type = "notify"` against each service as its fixture says it takes and answers
//! (tests/fixtures/notify/, with their sources; support/service_mock.rs): a firing made
//! of a hostile field (a mention, tags, control characters, invalid UTF-8, 100 KB) sent
//! escaped and cut, a 429 honoured for as long as the service asked, the resolve, a
//! SIGKILL between two attempts delivering once, a refusal failing for good with the
//! service's own words and no retry storm, and no secret in the log or the outbox.

use std::process::Command;
use std::time::Duration;

use crate::support::service_mock::{Seen, ServiceMock, LINK};
use crate::util::*;

const PUSH: &str = "push-token-0123456789abcdef";

/// Everything that formats, mentions, links or breaks, and 100 KB of it.
fn hostile() -> Vec<u8> {
    let mut b = b"<!channel> @everyone @here </b><a href=\"https://evil.example\">x</a> **bold** [link](https://evil.example) \x1b[31m\x00\x07 ".to_vec();
    b.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    b.extend(std::iter::repeat_n(b'x', 100_000));
    b
}

/// What the config says of the service: its keys, each value as the mock expects.
struct Setup {
    service: &'static str,
    keys: String,
    token: String,
    to: String,
    /// A value that must appear in no log line and no outbox answer.
    secret: String,
}

fn push(port: u16, body: &[u8]) {
    let path = std::env::temp_dir().join(format!("hark-push-{port}-{}", body.len()));
    std::fs::write(&path, body).unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
        ])
        .arg(format!("@{}", path.display()))
        .arg(format!(
            "http://127.0.0.1:{port}/push/job/fail?token={PUSH}"
        ))
        .output()
        .expect("run curl");
    let _ = std::fs::remove_file(&path);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

/// What a failed assertion shows of the requests: their answers, kinds and problems,
/// not their 100 KB bodies.
fn brief(seen: &[Seen]) -> Vec<(String, bool, Vec<String>)> {
    seen.iter()
        .map(|s| (s.answer.clone(), is_resolve(s), s.problems.clone()))
        .collect()
}

fn is_resolve(s: &Seen) -> bool {
    s.body["event_action"] == "resolve"
        || s.path.contains("/close")
        || s.body.to_string().contains("RESOLVED")
}

fn free_port() -> u16 {
    crate::support::free_port()
}

/// The whole round for one service.
fn exercise(setup: impl FnOnce(&ServiceMock) -> Setup, name: &'static str, token: &str, to: &str) {
    let mock = ServiceMock::start(name, token, to);
    let s = setup(&mock);
    let port = free_port();
    let config = format!(
        "[daemon]\nhttp = \"127.0.0.1:{port}\"\nurl = \"{LINK}\"\n\n\
         [watch.job]\ntype = \"push\"\ntoken = \"{PUSH}\"\nmax_body = \"1MiB\"\n\n\
         [rule.job_failed]\nwatch = \"job\"\nwhen = 'kind == \"fail\"'\nresolve_after = \"2s\"\n\
         severity = \"critical\"\nsummary = \"{{{{ event.body }}}}\"\nthen = [\"tell\"]\nresolve = [\"tell\"]\n\n\
         [action.tell]\ntype = \"notify\"\nservice = \"{}\"\n{}\n",
        s.service, s.keys
    );
    let mut h = start(&config);

    // A firing of a hostile field, first answered 429: tried again after the hint.
    mock.script(&["rate_limited"]);
    push(port, &hostile());
    let seen = mock.wait(2);
    assert!(seen.len() >= 2, "{name}: {:?}\n{}", brief(&seen), h.log());
    assert_eq!(seen[0].answer, "rate_limited");
    // The wait the service's answer asked for, in the form it has (none: hark's backoff).
    let r = |p: &str| mock.fixture(&format!("rate_limited.{p}"));
    let number = |v: serde_json::Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let hint = number(r("headers.Retry-After"))
        .or_else(|| number(r("headers.X-RateLimit-Reset-After")))
        .or_else(|| number(r("body.parameters.retry_after")))
        .or_else(|| number(r("body.retry_after_ms")).map(|ms| ms / 1000.0))
        .unwrap_or(0.0);
    let waited = seen[1].at.duration_since(seen[0].at).as_secs_f64();
    assert!(
        waited >= hint * 0.9,
        "{name}: tried again after {waited} s, asked {hint}"
    );
    for r in &seen[..2] {
        assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
        assert!(!is_resolve(r), "{name}: the first is no resolve");
    }
    assert!(
        seen[0].body == seen[1].body,
        "{name}: the same message both times"
    );
    assert!(
        seen[1].body.to_string().contains(LINK),
        "{name}: no link to the status page"
    );
    // The resolve, after 2 s without a failure.
    let seen = mock.wait(3);
    let log = h.log();
    let tail = &log[log.len().saturating_sub(3000)..];
    assert!(
        seen.len() >= 3 && is_resolve(&seen[2]),
        "{name}: {:?}\n{tail}",
        brief(&seen)
    );
    assert!(
        seen[2].problems.is_empty(),
        "{name}: {:?}",
        seen[2].problems
    );

    // A SIGKILL between two attempts: delivered once.
    mock.script(&["rate_limited"]);
    push(port, b"second");
    let before = mock.wait(4).len();
    assert_eq!(before, 4, "{name}");
    h.kill_and_restart();
    let after = mock.wait(5);
    let firings_ok = after[3..]
        .iter()
        .filter(|r| !is_resolve(r) && r.answer == "ok")
        .count();
    assert_eq!(firings_ok, 1, "{name}: {:?}", brief(&after));
    mock.wait(6); // its resolve

    // Refused for good: one attempt, the service's words in the outbox.
    let n = mock.seen().len();
    mock.script(&["unauthorized"]);
    push(port, b"third");
    mock.wait(n + 1);
    std::thread::sleep(Duration::from_secs(3));
    let later: Vec<_> = mock.seen()[n..]
        .iter()
        .filter(|r| !is_resolve(r))
        .cloned()
        .collect();
    assert_eq!(
        later.len(),
        1,
        "{name}: no retry of a refusal: {:?}",
        brief(&later)
    );
    let (_, outbox, _) = h.ctl(&["outbox", "--json"]);
    let words = mock.fixture("unauthorized.body");
    let said = crate::support::service_mock::error_words(&words);
    assert!(outbox.contains(&said), "{name}: {said:?} not in {outbox}");

    // No secret anywhere a person reads.
    let log = h.log();
    assert!(!log.contains(&s.secret), "{name}: the secret is in the log");
    assert!(
        !outbox.contains(&s.secret),
        "{name}: the secret is in the outbox"
    );
    let (_, status, _) = h.ctl(&["status", "--json"]);
    assert!(
        !status.contains(&s.secret),
        "{name}: the secret is in the status"
    );
    let _ = (s.token, s.to);
}

fn webhook(service: &'static str, path: &'static str) -> impl FnOnce(&ServiceMock) -> Setup {
    move |m| Setup {
        service,
        keys: format!("url = \"{}\"", m.url(path)),
        token: String::new(),
        to: String::new(),
        secret: path.to_string(),
    }
}

fn with_token(
    service: &'static str,
    token_key: &'static str,
    token: &'static str,
    to: Option<(&'static str, &'static str)>,
    api: bool,
) -> impl FnOnce(&ServiceMock) -> Setup {
    move |m| {
        let mut keys = format!("{token_key} = \"{token}\"\n");
        if let Some((k, v)) = to {
            keys.push_str(&format!("{k} = \"{v}\"\n"));
        }
        if api {
            keys.push_str(&format!("api_url = \"{}\"\n", m.url("")));
        }
        Setup {
            service,
            keys,
            token: token.to_string(),
            to: to.map_or(String::new(), |(_, v)| v.to_string()),
            secret: token.to_string(),
        }
    }
}

#[test]
fn slack() {
    exercise(
        webhook("slack", "/services/T000/B000/XXXX"),
        "slack",
        "",
        "",
    );
}

#[test]
fn discord() {
    let path = "/api/webhooks/123456789012345678/webhook-token";
    exercise(webhook("discord", path), "discord", "", "");
}

#[test]
fn teams() {
    let path = "/workflows/4f1c/triggers/manual/paths/invoke";
    exercise(webhook("teams", path), "teams", "", "");
}

#[test]
fn telegram() {
    let token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let chat = "-1001234567890";
    exercise(
        with_token("telegram", "token", token, Some(("chat_id", chat)), true),
        "telegram",
        token,
        chat,
    );
}

#[test]
fn matrix() {
    let token = "syt_aGFyaw_0123456789abcdef";
    let room = "!abc123:example.org";
    exercise(
        with_token("matrix", "token", token, Some(("room", room)), true),
        "matrix",
        token,
        room,
    );
}

#[test]
fn ntfy() {
    let token = "tk_0123456789abcdefghijklmnopq";
    exercise(
        with_token("ntfy", "token", token, Some(("topic", "alerts")), true),
        "ntfy",
        token,
        "alerts",
    );
}

#[test]
fn gotify() {
    let token = "AcL2bV8w.qXyZ0123";
    exercise(
        with_token("gotify", "token", token, None, true),
        "gotify",
        token,
        "",
    );
}

#[test]
fn pushover() {
    let token = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
    let user = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";
    exercise(
        with_token("pushover", "token", token, Some(("user", user)), true),
        "pushover",
        token,
        user,
    );
}

#[test]
fn pagerduty() {
    let key = "R0123456789ABCDEF0123456789ABCDE";
    exercise(
        with_token("pagerduty", "routing_key", key, None, true),
        "pagerduty",
        key,
        "",
    );
}

#[test]
fn opsgenie() {
    let key = "eb243592-faa2-4ba2-a551q-1afdf565c889";
    exercise(
        with_token("opsgenie", "api_key", key, None, true),
        "opsgenie",
        key,
        "",
    );
}

#[test]
fn hark_test_prints_the_exact_request_with_its_secrets_masked() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("bot"),
        "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw\n",
    )
    .unwrap();
    let config = format!(
        "[watch.job]\ntype = \"push\"\ntoken = \"{PUSH}\"\n\n\
         [rule.job_failed]\nwatch = \"job\"\nwhen = 'kind == \"fail\"'\nthen = [\"tell\", \"page\"]\n\n\
         [action.tell]\ntype = \"notify\"\nservice = \"telegram\"\ntoken = \"${{file:{}}}\"\nchat_id = \"-100123\"\n\n\
         [action.page]\ntype = \"notify\"\nservice = \"opsgenie\"\napi_key = \"eb243592-faa2-4ba2-a551-1afdf565c889\"\n",
        dir.path().join("bot").display()
    );
    let file = dir.path().join("hark.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["test", "-c"])
        .arg(&file)
        .args(["--event", "job kind=fail"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("POST https://api.telegram.org/bot${file:"),
        "{text}"
    );
    assert!(text.contains("\"parse_mode\":\"HTML\""), "{text}");
    assert!(text.contains("Authorization: GenieKey ***"), "{text}");
    assert!(
        !text.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
        "{text}"
    );
    assert!(!text.contains("eb243592"), "{text}");
}

#[test]
fn a_field_of_a_megabyte_is_delivered_escaped_and_cut() {
    let token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let mock = ServiceMock::start("telegram", token, "-100123");
    let port = free_port();
    let config = format!(
        "[daemon]\nhttp = \"127.0.0.1:{port}\"\n\n\
         [watch.job]\ntype = \"push\"\ntoken = \"{PUSH}\"\nmax_body = \"1MiB\"\n\n\
         [rule.job_failed]\nwatch = \"job\"\nwhen = 'kind == \"fail\"'\n\
         summary = \"{{{{ event.body }}}}\"\nthen = [\"tell\"]\n\n\
         [action.tell]\ntype = \"notify\"\nservice = \"telegram\"\ntoken = \"{token}\"\n\
         chat_id = \"-100123\"\napi_url = \"{}\"\n",
        mock.url("")
    );
    let h = start(&config);
    let mut body = hostile();
    body.resize(1_000_000, b'<');
    push(port, &body);
    let seen = mock.wait(1);
    assert_eq!(seen.len(), 1, "{}", h.log());
    assert!(seen[0].problems.is_empty(), "{:?}", seen[0].problems);
    let text = seen[0].body["text"].as_str().unwrap_or_default();
    assert!(text.chars().count() <= 4096 && text.contains("…[cut]"));
}
