//! Rules that expect a match: windows, groups, restarts and the wall clock, with the
//! clocks given by the test.

use std::time::{Duration, Instant, SystemTime};

use super::test_support::{event, load};
use super::{Engine, WallClock};
use crate::event::FiringState;

const WITHIN: &str = r#"
[watch.beat]
type = "heartbeat"

[rule.quiet]
watch = "beat"
when = "kind == 'success'"
expect_within = "10s"
group_by = ["host_name"]
resolve = []
"#;

fn ping(host: &str) -> std::sync::Arc<crate::event::Event> {
    event(
        "beat",
        "heartbeat",
        true,
        &[("kind", "success".into()), ("host_name", host.into())],
    )
}

fn states(f: &[crate::event::Firing]) -> Vec<(String, FiringState)> {
    f.iter()
        .map(|f| {
            let g = f
                .group
                .as_ref()
                .map(|g| g.key.to_string())
                .unwrap_or_default();
            (g, f.state)
        })
        .collect()
}

#[test]
fn a_group_that_goes_quiet_fires_once_for_itself_and_resolves_at_its_next_match() {
    let (_d, config) = load(WITHIN);
    let t0 = Instant::now();
    let mut e = Engine::new(&config);
    e.on_event(ping("a"), t0);
    e.on_event(ping("b"), t0);
    e.on_event(ping("b"), t0 + Duration::from_secs(8));
    assert_eq!(e.next_deadline(), Some(t0 + Duration::from_secs(10)));
    assert!(e.on_tick(t0 + Duration::from_secs(9)).is_empty());
    let fired = e.on_tick(t0 + Duration::from_secs(10));
    assert_eq!(
        states(&fired),
        [("[\"a\"]".to_string(), FiringState::Firing)]
    );
    assert_eq!(fired[0].event.fields["kind"], "missed");
    assert!(
        e.on_tick(t0 + Duration::from_secs(12)).is_empty(),
        "once, not again"
    );
    let fired = e.on_tick(t0 + Duration::from_secs(18));
    assert_eq!(
        states(&fired),
        [("[\"b\"]".to_string(), FiringState::Firing)]
    );
    let back = e.on_event(ping("a"), t0 + Duration::from_secs(20));
    assert_eq!(
        states(&back),
        [("[\"a\"]".to_string(), FiringState::Resolved)]
    );
    assert_eq!(back[0].duration, Duration::from_secs(10));
    // A pass that is not a match (a start) changes nothing.
    let start = event(
        "beat",
        "heartbeat",
        true,
        &[("kind", "start".into()), ("host_name", "b".into())],
    );
    assert!(e.on_event(start, t0 + Duration::from_secs(21)).is_empty());
}

#[test]
fn a_restart_neither_fires_again_nor_forgets_a_window_and_a_deadline_missed_while_down_fires_once()
{
    let (_d, config) = load(WITHIN);
    let t0 = Instant::now();
    let w0 = SystemTime::now();
    let mut e = Engine::new(&config);
    e.on_event(ping("a"), t0);
    e.on_event(ping("b"), t0 + Duration::from_secs(6));
    assert_eq!(e.on_tick(t0 + Duration::from_secs(10)).len(), 1);
    let saved = e.all_states(t0 + Duration::from_secs(10), w0 + Duration::from_secs(10));
    assert_eq!(saved.len(), 2);

    // Back 2 s later: `a` goes on firing without firing again; `b` is due at its time.
    let mut again = Engine::new(&config);
    let t1 = t0 + Duration::from_secs(12);
    assert!(again
        .restore(saved.clone(), t1, w0 + Duration::from_secs(12))
        .is_empty());
    assert!(again.on_tick(t1).is_empty());
    assert!(
        again.on_tick(t0 + Duration::from_secs(15)).is_empty(),
        "not early"
    );
    // (A millisecond on: the two clocks are read at slightly different moments.)
    let fired = again.on_tick(t0 + Duration::from_millis(16_001));
    assert_eq!(
        states(&fired),
        [("[\"b\"]".to_string(), FiringState::Firing)]
    );

    // Back a minute later: `b`'s deadline passed while hark was stopped: it fires at the
    // first tick, once.
    let mut late = Engine::new(&config);
    let t2 = t0 + Duration::from_secs(70);
    late.restore(saved, t2, w0 + Duration::from_secs(70));
    let fired = late.on_tick(t2);
    assert_eq!(
        states(&fired),
        [("[\"b\"]".to_string(), FiringState::Firing)]
    );
    assert!(late.on_tick(t2 + Duration::from_secs(60)).is_empty());
}

#[test]
fn a_rule_without_group_by_waits_from_its_first_load_and_stores_that_start() {
    let (_d, config) = load(&WITHIN.replace("group_by = [\"host_name\"]\n", ""));
    let t0 = Instant::now();
    let mut e = Engine::new(&config);
    let changes = e.take_changes(t0, SystemTime::now());
    assert_eq!(changes.len(), 1, "the window's start is stored at once");
    assert!(e.on_tick(t0 + Duration::from_secs(9)).is_empty());
    assert_eq!(e.on_tick(t0 + Duration::from_secs(11)).len(), 1);
}

#[test]
fn expect_groups_fire_for_keys_never_seen() {
    let (_d, config) = load(&WITHIN.replace(
        "group_by = [\"host_name\"]\n",
        "group_by = [\"host_name\"]\nexpect_groups = [\"db1\"]\n",
    ));
    let t0 = Instant::now();
    let mut e = Engine::new(&config);
    let fired = e.on_tick(t0 + Duration::from_secs(11));
    assert_eq!(
        states(&fired),
        [("[\"db1\"]".to_string(), FiringState::Firing)]
    );
    assert_eq!(fired[0].event.fields["host_name"], "db1");
}

const SCHEDULED: &str = r#"
[watch.beat]
type = "heartbeat"

[rule.nightly]
watch = "beat"
expect = "30 2 * * *"
grace = "5m"
timezone = "Europe/Berlin"
"#;

#[test]
fn a_schedule_on_the_spring_forward_day_is_due_once_at_the_end_of_the_gap() {
    let (_d, config) = load(SCHEDULED);
    let t0 = Instant::now();
    // 01:00 CET on 2026-03-29; at 02:00 the clocks go to 03:00 CEST.
    let start: SystemTime = "2026-03-29T00:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .into();
    let mut e = Engine::with_clock(&config, WallClock::starting(t0, start));
    let due = e.deadlines()[0].1;
    // 03:00 CEST (01:00 UTC) + 5 min: an hour and five minutes after the start.
    assert_eq!(
        due.duration_since(start).unwrap(),
        Duration::from_secs(3900)
    );
    assert!(e.on_tick(t0 + Duration::from_secs(3899)).is_empty());
    assert_eq!(e.on_tick(t0 + Duration::from_secs(3900)).len(), 1);
    // The match after it resolves; the next is due the next night at 02:30 CEST + 5 min.
    let r = e.on_event(
        event("beat", "heartbeat", true, &[("kind", "success".into())]),
        t0 + Duration::from_secs(4000),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].state, FiringState::Resolved);
    let next: SystemTime = "2026-03-30T00:35:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .into();
    assert_eq!(e.deadlines()[0].1, next);
}

#[test]
fn a_schedule_reads_the_wall_clock_again_within_a_minute() {
    let (_d, config) = load(SCHEDULED);
    let t0 = Instant::now();
    let start: SystemTime = "2026-06-01T00:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .into();
    let mut e = Engine::with_clock(&config, WallClock::starting(t0, start));
    assert!(e.next_deadline().unwrap() <= t0 + Duration::from_secs(61));
    // 02:30 CEST on 06-01 is 00:30 UTC: 35 minutes after the start, with the grace.
    let first_due = e.deadlines()[0].1;
    assert_eq!(
        first_due.duration_since(start).unwrap(),
        Duration::from_secs(2100)
    );
    assert!(e.on_tick(t0 + Duration::from_secs(60)).is_empty());
}
