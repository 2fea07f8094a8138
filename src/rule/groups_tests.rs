//! Rules counted per group: `group_by`, `times` + `within` on event watches,
//! `resolve_after`, `max_groups`, and their state across a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::test_support::{event, load};
use super::Engine;
use crate::event::{Event, FiringState};

const SSHD: &str = r#"
[watch.auth]
type = "log"
paths = ["/var/log/auth.log"]
pattern = 'Failed password for (?P<user>\S+) from (?P<ip>\S+)'

[action.ban]
type = "shell"
command = ["true"]

[rule.brute]
watch = "auth"
group_by = ["ip"]
times = 3
within = "1m"
resolve_after = "10m"
then = ["ban"]
resolve = ["ban"]
"#;

fn failed(ip: &str) -> Arc<Event> {
    event(
        "auth",
        "log",
        true,
        &[("ip", ip.into()), ("user", "root".into())],
    )
}

fn ips(firings: &[crate::event::Firing]) -> Vec<(String, FiringState)> {
    firings
        .iter()
        .map(|f| {
            let g = f.group.as_ref().expect("a grouped firing names its group");
            (g.fields["ip"].clone(), f.state)
        })
        .collect()
}

#[test]
fn a_group_fires_alone_on_its_own_count_within_the_window_and_resolves_after_quiet() {
    let (_d, config) = load(SSHD);
    let mut e = Engine::new(&config);
    let t0 = Instant::now();
    let s = Duration::from_secs;
    assert!(e.on_event(failed("10.0.0.1"), t0).is_empty());
    assert!(e.on_event(failed("10.0.0.2"), t0).is_empty());
    assert!(e.on_event(failed("10.0.0.2"), t0 + s(1)).is_empty());
    // A's second match is out of the window of its first: still 1 of 3 in the window.
    assert!(e.on_event(failed("10.0.0.1"), t0 + s(61)).is_empty());
    assert!(e.on_event(failed("10.0.0.1"), t0 + s(62)).is_empty());
    let fired = e.on_event(failed("10.0.0.2"), t0 + s(2));
    assert_eq!(ips(&fired), [("10.0.0.2".to_string(), FiringState::Firing)]);
    assert!(
        fired[0].resolves,
        "a firing that resolves keeps its alert open"
    );
    assert_eq!(fired[0].scope(), "\u{1e}[\"10.0.0.2\"]");
    // Firing: more matches fire nothing and push the resolve back.
    assert!(e.on_event(failed("10.0.0.2"), t0 + s(300)).is_empty());
    assert_eq!(e.next_deadline(), Some(t0 + s(900)));
    let fired = e.on_event(failed("10.0.0.1"), t0 + s(63));
    assert_eq!(ips(&fired), [("10.0.0.1".to_string(), FiringState::Firing)]);
    assert_eq!(e.firing().len(), 1, "one rule firing, for two groups");
    assert_eq!(e.firing_counts().values().sum::<u64>(), 2);
    // A (last match at 63 s) resolves at 663 s; B (last at 300 s) at 900 s.
    assert!(e.on_tick(t0 + s(662)).is_empty());
    let resolved = e.on_tick(t0 + s(663));
    assert_eq!(
        ips(&resolved),
        [("10.0.0.1".to_string(), FiringState::Resolved)]
    );
    assert_eq!(resolved[0].actions.len(), 1, "the resolve runs `resolve`");
    assert_eq!(
        resolved[0].count, 4,
        "every match of the episode, the one out of the window too"
    );
    let resolved = e.on_tick(t0 + s(900));
    assert_eq!(
        ips(&resolved),
        [("10.0.0.2".to_string(), FiringState::Resolved)]
    );
    assert!(e.firing().is_empty());
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn a_firing_group_survives_a_restart_and_resolves_on_time() {
    let (_d, config) = load(SSHD);
    let mut e = Engine::new(&config);
    let t0 = Instant::now();
    let wall = SystemTime::now();
    for _ in 0..3 {
        e.on_event(failed("192.0.2.9"), t0);
    }
    let changes = e.take_changes(t0, wall);
    assert_eq!(changes.len(), 1);
    let saved: Vec<(String, Vec<u8>)> = changes
        .into_iter()
        .map(|(k, v)| (k, v.expect("a firing group is stored")))
        .collect();
    assert_eq!(saved[0].0, "brute/\u{1e}[\"192.0.2.9\"]");
    let mut again = Engine::new(&config);
    assert!(again.restore(saved.clone(), t0, wall).is_empty());
    assert_eq!(again.firing().len(), 1);
    assert!(again.firing_keys().contains("brute/\u{1e}[\"192.0.2.9\"]"));
    let resolved = again.on_tick(t0 + Duration::from_secs(600));
    assert_eq!(
        ips(&resolved),
        [("192.0.2.9".to_string(), FiringState::Resolved)]
    );
    // Its resolve removes it from the store.
    let changes = again.take_changes(t0, wall);
    assert_eq!(changes, [(saved[0].0.clone(), None)]);
    // A rule without `resolve_after` any more forgets it.
    let (_d2, other) = load(
        &SSHD
            .replace("resolve_after = \"10m\"\n", "")
            .replace("resolve = [\"ban\"]\n", ""),
    );
    let mut third = Engine::new(&other);
    assert_eq!(third.restore(saved, t0, wall).len(), 1);
}

#[test]
fn max_groups_drops_the_least_recently_seen_idle_group_and_never_a_firing_one() {
    let (_d, config) = load(&SSHD.replace("times = 3", "times = 2\nmax_groups = 2"));
    let mut e = Engine::new(&config);
    let t0 = Instant::now();
    e.on_event(failed("a"), t0);
    e.on_event(failed("b"), t0);
    e.on_event(failed("a"), t0); // a fires
    e.on_event(failed("c"), t0); // b (idle, least recently seen) is dropped
                                 // b starts over: one match is not two.
    assert!(
        e.on_event(failed("b"), t0).is_empty(),
        "b was dropped and starts over"
    );
    // Now a is firing and c was dropped for b: c's count starts over too.
    assert!(e.on_event(failed("c"), t0).is_empty());
    let r = e.rules.iter().find(|r| &*r.head.name == "brute").unwrap();
    let super::mechanism::Mechanism::Counted(c) = &r.edges else {
        panic!("a rule with group_by counts its matches")
    };
    assert_eq!(c.episodes.book.dropped, 3, "b, then c, then b");
    assert!(c.episodes.groups.len() <= 2);
    // a firing, the other idle: a new group drops the idle one, never a.
    let held: HashSet<String> = c.episodes.groups.keys().map(|k| k.to_string()).collect();
    assert!(held.contains("[\"a\"]"));
}

#[test]
fn when_every_group_is_firing_a_new_group_is_refused_and_counted() {
    let (_d, config) = load(&SSHD.replace("times = 3", "times = 1\nmax_groups = 2"));
    let mut e = Engine::new(&config);
    let t0 = Instant::now();
    assert_eq!(e.on_event(failed("a"), t0).len(), 1);
    assert_eq!(e.on_event(failed("b"), t0).len(), 1);
    assert!(e.on_event(failed("c"), t0).is_empty());
    let r = e.rules.iter().find(|r| &*r.head.name == "brute").unwrap();
    assert_eq!((r.groups().dropped, r.groups().refused), (0, 1));
    // Once one resolves there is room again.
    assert_eq!(e.on_tick(t0 + Duration::from_secs(600)).len(), 2);
    assert_eq!(
        e.on_event(failed("c"), t0 + Duration::from_secs(601)).len(),
        1
    );
}

#[test]
fn an_event_without_the_group_field_is_an_error_not_a_group() {
    let (_d, config) = load(SSHD);
    let mut e = Engine::new(&config);
    let mut ev = (*failed("x")).clone();
    ev.fields.remove("ip");
    let d = e.decide(Arc::new(ev), Instant::now());
    assert!(
        matches!(&d[0].verdict, super::RuleVerdict::Error(m) if m.contains("`ip`")),
        "{:?}",
        d[0].verdict
    );
}

const PORTS: &str = r#"
[watch.port]
type = "tcp"
address = "127.0.0.1:1"

[rule.down]
watch = "port"
when = "!connected"
group_by = ["site"]
max_groups = 2
times = 2
"#;

fn sample(site: &str, connected: bool) -> Arc<Event> {
    event(
        "port",
        "tcp",
        false,
        &[("connected", connected.into()), ("site", site.into())],
    )
}

#[test]
fn a_state_rule_with_group_by_has_a_state_per_group_bounded_by_max_groups() {
    let (_d, config) = load(PORTS);
    let mut e = Engine::new(&config);
    let t0 = Instant::now();
    assert!(e.on_event(sample("x", false), t0).is_empty());
    assert!(e.on_event(sample("y", false), t0).is_empty());
    let fired = e.on_event(sample("x", false), t0);
    assert_eq!(fired.len(), 1);
    let g = fired[0].group.as_ref().unwrap();
    assert_eq!(g.fields["site"], "x");
    assert_eq!(fired[0].scope(), "port\u{1e}[\"x\"]");
    // z needs room: y (pending, not firing) goes, x (firing) stays.
    assert!(e.on_event(sample("z", false), t0).is_empty());
    let status = e.status(t0);
    let groups: Vec<(String, &str)> = status
        .iter()
        .filter_map(|r| Some((r.group.as_ref()?["site"].clone(), r.state)))
        .collect();
    assert!(groups.contains(&("x".to_string(), "firing")), "{groups:?}");
    assert!(!groups.iter().any(|(s, _)| s == "y"), "{groups:?}");
    assert_eq!(status[0].groups, Some(2));
    // The firing group resolves on its own sample.
    let resolved = e.on_event(sample("x", true), t0);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, FiringState::Resolved);
}

#[test]
fn a_refused_group_is_said_at_most_once_a_minute_with_the_count_unsaid() {
    let mut eps = super::groups::GroupBook::default();
    let t0 = Instant::now();
    assert_eq!(eps.refusal_to_say(t0), Some(0));
    for i in 1..=99 {
        assert_eq!(
            eps.refusal_to_say(t0 + Duration::from_millis(i * 100)),
            None
        );
    }
    assert_eq!(eps.refusal_to_say(t0 + Duration::from_secs(61)), Some(99));
    assert_eq!(eps.refusal_to_say(t0 + Duration::from_secs(62)), None);
}

#[test]
fn max_groups_past_what_a_host_can_hold_is_refused_by_validate() {
    let text = SSHD.replace("times = 3", "times = 3\nmax_groups = 10000000");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, text).unwrap();
    let err = crate::config::Config::load(&[path])
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("1 to 1000000")),
        "{err:?}"
    );
}
