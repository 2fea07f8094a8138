use super::*;

const S: Duration = Duration::from_secs(1);

fn consecutive(n: u32) -> StateMachine {
    StateMachine::new(Threshold::Consecutive(n), None, None)
}

/// Feeds one sample a second from `t0`; returns the steps.
fn feed(m: &mut StateMachine, t0: Instant, samples: &[bool]) -> Vec<Step> {
    samples
        .iter()
        .enumerate()
        .map(|(i, &hit)| m.on_sample(hit, false, t0 + S * i as u32))
        .collect()
}

fn fires(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Fire { .. }))
        .count()
}

fn resolves(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::Resolve { .. }))
        .count()
}

#[test]
fn a_single_failed_sample_is_ignored_under_times_3() {
    let mut m = consecutive(3);
    let steps = feed(
        &mut m,
        Instant::now(),
        &[false, true, false, false, true, true, false],
    );
    assert_eq!(fires(&steps), 0);
    assert_eq!(
        steps[1],
        Step::Pending(Progress::Matches { n: 1, times: 3 })
    );
    assert_eq!(steps[2], Step::Cleared);
    assert_eq!(
        steps[5],
        Step::Pending(Progress::Matches { n: 2, times: 3 })
    );
}

#[test]
fn a_sustained_failure_fires_once_and_recovery_resolves_once() {
    let mut m = consecutive(3);
    let mut samples = vec![true; 10];
    samples.extend([false; 5]);
    let steps = feed(&mut m, Instant::now(), &samples);
    assert_eq!(steps[2], Step::Fire { count: 3 });
    assert_eq!(fires(&steps), 1);
    assert!(steps[3..10].iter().all(|s| *s == Step::StillFiring));
    assert_eq!(
        steps[10],
        Step::Resolve {
            count: 10,
            duration: S * 8
        }
    );
    assert_eq!(resolves(&steps), 1);
    assert!(steps[11..].iter().all(|s| *s == Step::Ok));
}

#[test]
fn times_within_counts_matches_in_a_sliding_window() {
    let mut m = StateMachine::new(
        Threshold::Window {
            times: 3,
            within: S * 5,
        },
        None,
        None,
    );
    let t0 = Instant::now();
    // Alternating: never 3 in a row, but 3 within 5 s at t=4.
    let steps = feed(&mut m, t0, &[true, false, true, false, true]);
    assert_eq!(steps[1], Step::Cleared);
    assert_eq!(steps[3], Step::Cleared);
    assert_eq!(steps[4], Step::Fire { count: 3 });
}

#[test]
fn times_within_forgets_matches_that_age_out() {
    let mut m = StateMachine::new(
        Threshold::Window {
            times: 3,
            within: S * 3,
        },
        None,
        None,
    );
    // A match every 2 s: at most 2 inside any 3 s window.
    let t0 = Instant::now();
    for i in 0..20u32 {
        let step = m.on_sample(i % 2 == 0, false, t0 + S * i);
        assert!(!matches!(step, Step::Fire { .. }), "fired at {i}: {step:?}");
    }
}

#[test]
fn the_same_pattern_does_not_fire_without_within() {
    let mut m = consecutive(3);
    let steps = feed(&mut m, Instant::now(), &[true, false, true, false, true]);
    assert_eq!(fires(&steps), 0);
}

#[test]
fn for_fires_once_the_condition_held_long_enough() {
    let mut m = StateMachine::new(Threshold::HeldFor(S * 30), None, None);
    let t0 = Instant::now();
    assert_eq!(
        m.on_sample(true, false, t0),
        Step::Pending(Progress::Held {
            held: Duration::ZERO,
            needed: S * 30
        })
    );
    assert!(matches!(
        m.on_sample(true, false, t0 + S * 29),
        Step::Pending(_)
    ));
    assert_eq!(
        m.on_sample(true, false, t0 + S * 30),
        Step::Fire { count: 3 }
    );
}

#[test]
fn for_starts_over_after_a_clear_sample() {
    let mut m = StateMachine::new(Threshold::HeldFor(S * 30), None, None);
    let t0 = Instant::now();
    m.on_sample(true, false, t0);
    assert_eq!(m.on_sample(false, false, t0 + S * 20), Step::Cleared);
    assert!(matches!(
        m.on_sample(true, false, t0 + S * 40),
        Step::Pending(_)
    ));
    assert!(matches!(
        m.on_sample(true, false, t0 + S * 69),
        Step::Pending(_)
    ));
    assert!(matches!(
        m.on_sample(true, false, t0 + S * 70),
        Step::Fire { .. }
    ));
}

#[test]
fn repeat_reruns_then_while_firing() {
    let mut m = StateMachine::new(Threshold::Consecutive(1), Some(S * 10), None);
    let t0 = Instant::now();
    let steps = feed(&mut m, t0, &[true; 25]);
    assert_eq!(steps[0], Step::Fire { count: 1 });
    assert_eq!(
        steps[10],
        Step::Repeat {
            count: 11,
            duration: S * 10
        }
    );
    assert_eq!(
        steps[20],
        Step::Repeat {
            count: 21,
            duration: S * 20
        }
    );
    let repeats = steps
        .iter()
        .filter(|s| matches!(s, Step::Repeat { .. }))
        .count();
    assert_eq!(repeats, 2);
}

#[test]
fn cooldown_holds_a_refire_back_until_it_ends() {
    let mut m = StateMachine::new(Threshold::Consecutive(1), None, Some(S * 60));
    let t0 = Instant::now();
    assert_eq!(m.on_sample(true, false, t0), Step::Fire { count: 1 });
    assert!(matches!(
        m.on_sample(false, false, t0 + S),
        Step::Resolve { .. }
    ));
    assert_eq!(
        m.on_sample(true, false, t0 + S * 2),
        Step::Held(Hold::CoolingDown { left: S * 58 })
    );
    assert_eq!(
        m.on_sample(true, false, t0 + S * 60),
        Step::Fire { count: 2 }
    );
}

#[test]
fn unless_holds_the_firing_back_and_it_fires_once_unblocked() {
    let mut m = consecutive(2);
    let t0 = Instant::now();
    assert!(matches!(m.on_sample(true, true, t0), Step::Pending(_)));
    assert_eq!(
        m.on_sample(true, true, t0 + S),
        Step::Held(Hold::Suppressed)
    );
    assert_eq!(
        m.on_sample(true, true, t0 + S * 2),
        Step::Held(Hold::Suppressed)
    );
    assert_eq!(
        m.on_sample(true, false, t0 + S * 3),
        Step::Fire { count: 4 }
    );
}

#[test]
fn a_suppressed_rule_that_recovers_says_nothing() {
    let mut m = consecutive(1);
    let t0 = Instant::now();
    assert_eq!(m.on_sample(true, true, t0), Step::Held(Hold::Suppressed));
    assert_eq!(m.on_sample(false, false, t0 + S), Step::Cleared);
    assert_eq!(m.on_sample(false, false, t0 + S * 2), Step::Ok);
}

#[test]
fn a_restored_firing_state_does_not_fire_again_and_resolves_later() {
    let t0 = Instant::now();
    let wall0 = SystemTime::now();
    let mut m = consecutive(1);
    assert_eq!(m.on_sample(true, false, t0), Step::Fire { count: 1 });
    let saved = m.save(t0 + S * 5, wall0 + S * 5);
    assert!(saved.firing.is_some());

    // Another process, a minute later.
    let t1 = t0 + S * 65;
    let mut again = consecutive(1);
    again.restore(&saved, t1, wall0 + S * 65);
    assert!(again.is_firing());
    assert_eq!(again.on_sample(true, false, t1), Step::StillFiring);
    assert_eq!(
        again.on_sample(false, false, t1 + S),
        Step::Resolve {
            count: 2,
            duration: S * 66
        }
    );
}

#[test]
fn a_restored_cooldown_is_honoured() {
    let t0 = Instant::now();
    let wall0 = SystemTime::now();
    let mut m = StateMachine::new(Threshold::Consecutive(1), None, Some(S * 60));
    m.on_sample(true, false, t0);
    m.on_sample(false, false, t0 + S);
    let saved = m.save(t0 + S, wall0 + S);
    let mut again = StateMachine::new(Threshold::Consecutive(1), None, Some(S * 60));
    again.restore(&saved, t0 + S * 10, wall0 + S * 10);
    assert!(matches!(
        again.on_sample(true, false, t0 + S * 10),
        Step::Held(Hold::CoolingDown { .. })
    ));
}

#[test]
fn a_long_pending_run_keeps_bounded_memory() {
    let mut m = StateMachine::new(Threshold::Consecutive(u32::MAX), None, None);
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        m.on_sample(true, false, t0 + Duration::from_millis(i as u64));
    }
    let Phase::Pending { matches, count, .. } = &m.phase else {
        panic!("not pending");
    };
    assert_eq!(*count, 10_000);
    assert!(matches.is_empty());
}
#[test]
fn describe_gives_the_counters_and_timers_in_words() {
    let t0 = Instant::now();
    let mut m = StateMachine::new(
        Threshold::Consecutive(3),
        Some(Duration::from_secs(600)),
        Some(Duration::from_secs(60)),
    );
    feed(&mut m, t0, &[true, true]);
    assert_eq!(
        m.describe(t0 + S),
        ["pending: 2 of 3 consecutive matching samples, since 1s ago"]
    );
    m.on_sample(true, false, t0 + S * 2);
    let later = t0 + S * 2 + Duration::from_secs(252);
    assert_eq!(
        m.describe(later),
        [
            "firing for 4m 12s (3 matching samples)",
            "its actions repeat in 5m 48s if it still matches",
        ]
    );
    m.on_sample(false, false, t0 + S * 3);
    assert_eq!(
        m.describe(t0 + S * 32),
        ["ok: the last sample did not match", "cooldown ends in 30s"]
    );
}
