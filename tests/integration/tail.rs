//! `hark tail` streams events, verdicts and action outcomes live; a client that does not
//! read never holds the daemon up; `hark explain` shows why a rule is in its state.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::http_server::Server;
use crate::util::*;

fn start_tail(api: &Server) -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    start_in(
        dir,
        &fixture("tail/tail.toml", &[("@URL@", &api.url("/health"))]),
    )
}

/// `hark tail ARGS` as a child, its stdout lines gathered by a thread.
struct Tail {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Tail {
    fn start(h: &Hark, args: &[&str]) -> Tail {
        let mut child = Command::new(HARK)
            .arg("tail")
            .args(args)
            .arg("--socket")
            .arg(h.path("control.sock"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hark tail");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        Tail { child, lines }
    }

    fn text(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn json(&self) -> Vec<Value> {
        self.text()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits (bounded) for a JSON line that `pred` accepts; its index.
    fn wait_json(&self, pred: impl Fn(&Value) -> bool) -> Option<usize> {
        let mut at = None;
        wait_for(Duration::from_secs(10), || {
            at = self.json().iter().position(&pred);
            at.is_some()
        });
        at
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is(l: &Value, kind: &str, rule: &str, what: &str) -> bool {
    l["type"] == kind && l["rule"] == rule && l["what"] == what
}

#[test]
fn tail_shows_a_file_event_pending_then_firing_verdicts_and_the_actions_exit_status() {
    let api = Server::start();
    api.set_status(200);
    let h = start_tail(&api);
    let json = Tail::start(&h, &["--json"]);
    let text = Tail::start(&h, &["--rule", "dropped"]);
    // Connected once the http check's events come through.
    assert!(
        json.wait_json(|l| l["type"] == "event" && l["watch"] == "api")
            .is_some(),
        "{:?}",
        json.text()
    );

    std::fs::write(h.path("in/report.txt"), "x").unwrap();
    let event = json.wait_json(|l| {
        l["type"] == "event"
            && l["watch"] == "drop"
            && l["what"] == "create"
            && l["fields"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("in/report.txt"))
    });
    let fired = json.wait_json(|l| is(l, "verdict", "dropped", "firing"));
    let exited = json.wait_json(|l| is(l, "action", "dropped", "exited"));
    let (Some(event), Some(fired), Some(exited)) = (event, fired, exited) else {
        panic!("{:#?}", json.text());
    };
    assert!(event < fired && fired < exited, "{:#?}", json.text());
    let lines = json.json();
    assert_eq!(lines[exited]["exit_code"], 7, "{}", lines[exited]);
    assert_eq!(lines[exited]["action"], "record");

    api.set_status(500);
    let pending2 = json.wait_json(|l| {
        is(l, "verdict", "api_down", "pending")
            && l["text"]
                .as_str()
                .is_some_and(|t| t.contains("pending 2/3"))
    });
    let firing = json.wait_json(|l| is(l, "verdict", "api_down", "firing"));
    let exited = json.wait_json(|l| is(l, "action", "api_down", "exited"));
    let (Some(pending2), Some(firing), Some(exited)) = (pending2, firing, exited) else {
        panic!("{:#?}", json.text());
    };
    assert!(pending2 < firing && firing < exited, "{:#?}", json.text());
    assert_eq!(json.json()[exited]["exit_code"], 7);
    assert_eq!(h.wait_lines(2), ["dropped", "api_down"]);

    // Now `api_down` fires, `dropped` is held back by its `unless`, and says so.
    std::fs::write(h.path("in/later.txt"), "x").unwrap();
    assert!(
        json.wait_json(|l| is(l, "verdict", "dropped", "suppressed"))
            .is_some(),
        "{:#?}",
        json.text()
    );

    // The second client, in words and only about `dropped`: its watch's events, its
    // verdicts, its action; nothing of the http check.
    assert!(
        wait_for(Duration::from_secs(10), || text
            .text()
            .iter()
            .any(|l| l.contains("suppressed by `unless`"))),
        "{:#?}",
        text.text()
    );
    let words = text.text();
    assert!(
        words
            .iter()
            .any(|l| l.contains(" event ") && l.contains("report.txt")),
        "{words:#?}"
    );
    assert!(
        words
            .iter()
            .any(|l| l.contains("dropped → record") && l.contains("exited 7")),
        "{words:#?}"
    );
    // Each line is `TIME KIND WHERE WORDS`: nothing is about the http check or its rules.
    assert!(
        !words.iter().any(|l| l
            .split_whitespace()
            .nth(2)
            .is_some_and(|at| at.starts_with("api"))),
        "a rule filter lets other watches through: {words:#?}"
    );
}

#[test]
fn tail_refuses_an_unknown_rule_or_watch() {
    let api = Server::start();
    let h = start_tail(&api);
    let (code, _, err) = h.ctl(&["tail", "--rule", "nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no rule `nope`"), "{err}");
    let (code, _, err) = h.ctl(&["tail", "--watch", "nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no watch `nope`"), "{err}");
}

#[test]
fn a_tail_client_that_does_not_read_never_delays_an_action_and_is_told_what_it_lost() {
    let api = Server::start();
    api.set_status(200);
    let h = start_tail(&api);
    let mut stalled = UnixStream::connect(h.path("control.sock")).unwrap();
    stalled.write_all(b"{\"command\":\"tail\"}\n").unwrap();
    let mut first = String::new();
    let mut reader = BufReader::new(stalled.try_clone().unwrap());
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("tailing"), "{first}");

    // Far more trace than the socket buffer and the ring hold, while the client reads
    // nothing: about 2 lines of a few hundred bytes per file.
    for i in 0..4000 {
        std::fs::write(h.path(&format!("in/f{i}.log")), "").unwrap();
    }
    std::fs::write(h.path("in/go.txt"), "").unwrap();
    assert_eq!(
        h.wait_lines(1),
        ["dropped"],
        "the action waited for the stalled client; log:\n{}",
        h.log()
    );
    assert_eq!(h.status()["rules"].as_array().map(Vec::len), Some(3));

    // Now it reads: somewhere it was told how many lines it lost, and the stream goes on
    // after that with the newest lines.
    stalled
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut got = String::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
                if got.contains("go.txt") && got.contains("\"action\"") {
                    break;
                }
            }
        }
    }
    let lines: Vec<Value> = got
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let lost = lines
        .iter()
        .position(|l| l["type"] == "lost" && l["lost"].as_u64().is_some_and(|n| n > 0));
    let go = lines.iter().position(|l| {
        l["type"] == "event"
            && l["fields"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("go.txt"))
    });
    let (Some(lost), Some(go)) = (lost, go) else {
        panic!("no lost line or no go.txt event in {} lines", lines.len());
    };
    assert!(lost < go, "the newest lines come after the loss");
}

#[test]
fn explain_shows_sub_expression_values_counters_unless_and_last_actions() {
    let api = Server::start();
    api.set_status(500);
    let h = start_tail(&api);
    assert_eq!(h.wait_lines(1), ["api_down"]);
    // A few more samples for the long rule's count.
    std::thread::sleep(Duration::from_millis(500));

    let (code, out, err) = h.ctl(&["explain", "api_down"]);
    assert_eq!(code, Some(0), "{err}");
    for needle in [
        "when: status >= 500",
        "fires after 3 consecutive matching samples",
        "api: firing",
        "firing for ",
        "status >= 500 = true",
        "status = 500",
        "matches; still firing",
        "record: exited 7",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }

    let (code, out, err) = h.ctl(&["explain", "api_down_long", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let e: Value = serde_json::from_str(&out).unwrap();
    let notes = e["states"][0]["notes"][0].as_str().unwrap_or_default();
    assert!(
        notes.starts_with("pending: ") && notes.contains(" of 100000 consecutive matching samples"),
        "{e:#}"
    );
    let last = &e["events"]
        .as_array()
        .and_then(|v| v.last())
        .cloned()
        .unwrap();
    assert!(
        last["values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["expr"] == "status" && v["value"] == "500"),
        "{last:#}"
    );

    std::fs::write(h.path("in/held.txt"), "x").unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        let (_, out, _) = h.ctl(&["explain", "dropped"]);
        out.contains("held.txt")
    }));
    h.ctl(&["silence", "dropped", "--for", "1h"]);
    let (_, out, _) = h.ctl(&["explain", "dropped"]);
    for needle in [
        "unless api_down: FIRING",
        "SILENCED until ",
        "suppressed by `unless` (rule `api_down` is firing)",
        "path.endsWith('.txt') = true",
        "last actions (0):",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }

    let (code, _, err) = h.ctl(&["explain", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no rule `nope`"), "{err}");
}

#[test]
fn status_shows_where_the_time_goes() {
    let api = Server::start();
    api.set_status(500);
    let h = start_tail(&api);
    assert_eq!(h.wait_lines(1), ["api_down"]);
    assert!(wait_for(Duration::from_secs(10), || {
        h.status()["timing"]["actions"][0]["run"]["n"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    }));
    let st = h.status();
    let t = &st["timing"];
    let api_t = t["watches"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "api"))
        .unwrap();
    for part in ["check", "lag"] {
        assert!(api_t[part]["n"].as_u64().unwrap() >= 3, "{t:#}");
        assert!(api_t[part]["p99_ms"].as_f64().unwrap() >= api_t[part]["p50_ms"].as_f64().unwrap());
    }
    let record = &t["actions"][0];
    assert_eq!(record["name"], "record");
    assert!(record["wait"]["n"].as_u64().unwrap() >= 1, "{t:#}");
    // Both queues: the streams' and the other watches' (4,096 each).
    assert_eq!(t["runtime"]["event_queue_capacity"], 8192, "{t:#}");
    assert!(t["runtime"]["tasks"].as_u64().unwrap() >= 1, "{t:#}");

    let (_, text, _) = h.ctl(&["status"]);
    assert!(
        text.contains("timing (the last 1000 samples of each):"),
        "{text}"
    );
    assert!(text.contains("action record"), "{text}");
    assert!(text.contains("runtime: event queue "), "{text}");
}

/// The README's first rule (debounce 1 s, cooldown 10 s, here 3 s), its action recording
/// each run with the count it stands for.
fn start_reload_rule() -> Hark {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    start_in(
        dir,
        &format!(
            "[watch.conf]\ntype = \"file\"\npaths = [\"@DIR@/conf/*.conf\"]\ndebounce = \"200ms\"\n\n\
             [rule.reload]\nwatch = \"conf\"\nwhen = 'exists'\nthen = [\"rec\"]\n\
             debounce = \"1s\"\ncooldown = \"3s\"\n\n\
             [action.rec]\ntype = \"shell\"\ncommand = {}\n",
            recorder_argv("@DIR@/out", &["{{ count }}"])
        ),
    )
}

#[test]
fn a_change_inside_the_cooldown_fires_once_when_it_ends_and_tail_says_so() {
    let h = start_reload_rule();
    let tail = Tail::start(&h, &["--json", "--rule", "reload"]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(h.path("conf/a.conf"), "a").unwrap();
    let first = wait_records(&h.path("out"), 1);
    assert_eq!(first, [b"1".to_vec()], "{}", h.log());
    // A burst 300 ms after the first reload (inside the 3 s cooldown): a git checkout.
    for i in 0..5 {
        std::fs::write(h.path(&format!("conf/f{i}.conf")), "b").unwrap();
    }
    let held = tail.wait_json(|l| l["what"] == "held");
    assert!(held.is_some(), "{:?}", tail.text());
    assert!(
        records(&h.path("out")).len() == 1,
        "fired inside the cooldown"
    );
    // Then, when the cooldown ends, once, standing for the five changes.
    let all = wait_records(&h.path("out"), 2);
    assert_eq!(all, [b"1".to_vec(), b"5".to_vec()], "{}", h.log());
    let fired = tail.wait_json(|l| {
        l["what"] == "firing"
            && l["text"]
                .as_str()
                .is_some_and(|t| t.contains("cooldown ended"))
    });
    assert!(fired.is_some(), "{:?}", tail.text());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(records(&h.path("out")).len(), 2, "{}", h.log());
}

#[test]
fn during_cooldown_drop_drops_a_change_inside_the_cooldown() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let h = start_in(
        dir,
        &format!(
            "[watch.conf]\ntype = \"file\"\npaths = [\"@DIR@/conf/*.conf\"]\n\n\
             [rule.reload]\nwatch = \"conf\"\nwhen = 'exists'\nthen = [\"rec\"]\n\
             cooldown = \"2s\"\nduring_cooldown = \"drop\"\n\n\
             [action.rec]\ntype = \"shell\"\ncommand = {}\n",
            recorder_argv("@DIR@/out", &["{{ count }}"])
        ),
    );
    std::fs::write(h.path("conf/a.conf"), "a").unwrap();
    assert_eq!(wait_records(&h.path("out"), 1).len(), 1, "{}", h.log());
    std::fs::write(h.path("conf/b.conf"), "b").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(records(&h.path("out")).len(), 1, "{}", h.log());
}

#[test]
fn a_burst_of_one_verdict_is_folded_into_one_line_with_its_count() {
    let h = start_reload_rule();
    let tail = Tail::start(&h, &["--rule", "reload"]);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        std::fs::write(h.path(&format!("conf/f{i}.conf")), "b").unwrap();
    }
    let folded = wait_for(Duration::from_secs(10), || {
        tail.text()
            .iter()
            .any(|l| l.contains("×5 matches; fires when its debounce window ends"))
    });
    assert!(folded, "{:#?}", tail.text());
    let debounced = tail
        .text()
        .iter()
        .filter(|l| l.contains("rule") && l.contains("fires when its debounce window ends"))
        .count();
    assert_eq!(debounced, 2, "the first and the fold: {:#?}", tail.text());
}
