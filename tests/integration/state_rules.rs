//! Stateful rules over http checks against a local server: one failure is not an outage,
//! an outage alerts once, recovery says so once, and a restart changes none of that.

use std::time::{Duration, Instant};

use crate::http_server::Server;
use crate::util::*;

/// The first two words of each record ("RULE STATE COUNT STATUS"): rule and state.
fn states(h: &Hark) -> Vec<String> {
    h.lines()
        .iter()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

fn start_on(fixture_name: &str, server: &Server) -> Hark {
    start(&fixture(fixture_name, &[("@URL@", &server.url("/health"))]))
}

#[test]
fn a_single_failed_check_is_ignored_under_times_3() {
    let server = Server::start();
    let h = start_on("http/api_down.toml", &server);
    assert!(server.wait_hits(0, 3));
    server.script(&[500]);
    let at = server.hits();
    server.script(&[200, 500, 500]);
    assert!(server.wait_hits(at, 10), "the checks stopped");
    assert_eq!(h.lines(), Vec::<String>::new(), "log:\n{}", h.log());
}

#[test]
fn a_sustained_failure_fires_once_and_recovery_resolves_once() {
    let server = Server::start();
    let h = start_on("http/api_down.toml", &server);
    server.set_status(500);
    assert!(
        !h.wait_lines(1).is_empty(),
        "never fired; log:\n{}",
        h.log()
    );
    let at = server.hits();
    assert!(server.wait_hits(at, 8));
    assert_eq!(h.lines(), vec!["api_down firing 3 500"]);

    server.set_status(200);
    assert!(
        h.wait_lines(2).len() >= 2,
        "never resolved; log:\n{}",
        h.log()
    );
    let at = server.hits();
    assert!(server.wait_hits(at, 8));
    let got = h.lines();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[1].starts_with("api_down resolved ") && got[1].ends_with(" 200"),
        "{got:?}"
    );
}

#[test]
fn times_within_fires_on_n_failures_in_the_window_but_times_alone_needs_them_in_a_row() {
    let server = Server::start();
    let h = start_on("http/window.toml", &server);
    assert!(server.wait_hits(0, 2));
    server.script(&[500, 200, 500, 200, 500]);
    assert!(
        !h.wait_lines(1).is_empty(),
        "never fired; log:\n{}",
        h.log()
    );
    let at = server.hits();
    assert!(server.wait_hits(at, 5));
    assert_eq!(h.lines(), vec!["three_in_window firing 3 500"]);
}

#[test]
fn for_fires_only_after_the_failure_held_that_long() {
    let server = Server::start();
    let h = start_on("http/held_for.toml", &server);
    assert!(server.wait_hits(0, 2));
    let failing_since = Instant::now();
    server.set_status(500);
    assert!(
        !h.wait_lines(1).is_empty(),
        "never fired; log:\n{}",
        h.log()
    );
    let waited = failing_since.elapsed();
    assert!(
        waited >= Duration::from_millis(700),
        "fired after {waited:?}, before `for` had passed"
    );
    assert_eq!(states(&h), vec!["api_down firing"]);
}

#[test]
fn repeat_reruns_then_while_firing_and_resolve_runs_once() {
    let server = Server::start();
    let h = start_on("http/repeat.toml", &server);
    server.set_status(503);
    assert!(
        h.wait_lines(3).len() >= 3,
        "no reminders; log:\n{}",
        h.log()
    );
    server.set_status(200);
    let n = h.lines().len();
    assert!(h.wait_lines(n + 1).len() > n);
    let at = server.hits();
    assert!(server.wait_hits(at, 5));
    let got = states(&h);
    let (last, firings) = got.split_last().unwrap();
    assert_eq!(last, "api_down resolved", "{got:?}");
    assert!(firings.iter().all(|s| s == "api_down firing"), "{got:?}");
    // Counts grow: each reminder stands for every failed check so far.
    let counts: Vec<u64> = h.lines()[..firings.len()]
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
}

#[test]
fn unless_keeps_a_dependent_rule_quiet_while_its_cause_fires() {
    let upstream = Server::start();
    let api = Server::start();
    upstream.set_status(500);
    api.set_status(500);
    let h = start(&fixture(
        "http/unless.toml",
        &[("@URL@", &api.url("/")), ("@UPSTREAM@", &upstream.url("/"))],
    ));
    assert!(!h.wait_lines(1).is_empty());
    let at = api.hits();
    assert!(api.wait_hits(at, 8));
    assert_eq!(
        states(&h),
        vec!["upstream_down firing"],
        "log:\n{}",
        h.log()
    );

    // The cause recovers; the dependent one is still down and now speaks.
    upstream.set_status(200);
    assert!(h.wait_lines(3).len() >= 3, "log:\n{}", h.log());
    // Both checks tick on the same clock: the two actions then run at once, and which
    // appends first is the shells' race. The order hark decided in is the log's.
    let mut got = states(&h);
    got[1..].sort();
    assert_eq!(
        got,
        vec![
            "upstream_down firing",
            "api_down firing",
            "upstream_down resolved"
        ]
    );
    let log = h.log();
    let resolved = log.find("rule resolved rule=upstream_down");
    let fired = log.find("rule firing rule=api_down");
    assert!(
        resolved.is_some() && fired.is_some() && resolved < fired,
        "log:\n{log}"
    );
}

#[test]
fn a_restart_while_firing_does_not_fire_again_and_resolves_later() {
    let server = Server::start();
    server.set_status(500);
    let mut h = start_on("http/restart.toml", &server);
    assert!(!h.wait_lines(1).is_empty());
    h.restart();
    assert!(
        h.wait_log("still firing from before the restart"),
        "log:\n{}",
        h.log()
    );
    let at = server.hits();
    assert!(server.wait_hits(at, 8));
    assert_eq!(states(&h), vec!["api_down firing"]);

    server.set_status(200);
    assert!(h.wait_lines(2).len() >= 2);
    let at = server.hits();
    assert!(server.wait_hits(at, 5));
    assert_eq!(states(&h), vec!["api_down firing", "api_down resolved"]);
}

#[test]
fn a_recovery_while_the_daemon_was_down_is_resolved_when_it_comes_back() {
    let server = Server::start();
    server.set_status(500);
    let mut h = start_on("http/restart.toml", &server);
    assert!(!h.wait_lines(1).is_empty());
    assert_eq!(h.stop(), Some(0));
    server.set_status(200);
    h.restart();
    assert!(h.wait_lines(2).len() >= 2, "log:\n{}", h.log());
    let at = server.hits();
    assert!(server.wait_hits(at, 5));
    assert_eq!(states(&h), vec!["api_down firing", "api_down resolved"]);
}
