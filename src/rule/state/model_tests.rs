//! The state machine against a reference model written as plainly as possible, on
//! random sample sequences.
use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Quiet,
    Fire,
    Resolve,
    Repeat,
}

fn kind(s: &Step) -> Kind {
    match s {
        Step::Fire { .. } => Kind::Fire,
        Step::Resolve { .. } => Kind::Resolve,
        Step::Repeat { .. } => Kind::Repeat,
        _ => Kind::Quiet,
    }
}

/// (matched, unless-blocked, milliseconds since the previous sample)
fn samples() -> impl Strategy<Value = Vec<(bool, bool, u64)>> {
    prop::collection::vec(
        (any::<bool>(), prop::bool::weighted(0.2), 1u64..3000),
        0..200,
    )
}

fn threshold() -> impl Strategy<Value = Threshold> {
    prop_oneof![
        (1u32..6).prop_map(Threshold::Consecutive),
        (1u32..6, 1u64..10_000).prop_map(|(times, ms)| Threshold::Window {
            times,
            within: Duration::from_millis(ms)
        }),
        (0u64..10_000).prop_map(|ms| Threshold::HeldFor(Duration::from_millis(ms))),
    ]
}

/// What should happen, from first principles: the threshold is met on a matching
/// sample when the last `times` samples matched / `times` matches lie inside the
/// window / every sample since the first of the current run matched for `for`.
fn reference(th: Threshold, repeat: Option<Duration>, samples: &[(bool, bool, u64)]) -> Vec<Kind> {
    let mut out = Vec::new();
    let mut firing = false;
    let mut last_sent = 0u64;
    let mut run_start: Option<u64> = None;
    let mut run = 0u32;
    let mut hits: Vec<u64> = Vec::new();
    let mut t = 0u64;
    for &(matched, quiet, dt) in samples {
        t += dt;
        if !matched {
            run = 0;
            run_start = None;
            if firing {
                firing = false;
                hits.clear();
                out.push(Kind::Resolve);
            } else {
                out.push(Kind::Quiet);
            }
            continue;
        }
        run += 1;
        let start = *run_start.get_or_insert(t);
        if firing {
            match repeat {
                Some(r) if !quiet && t - last_sent >= r.as_millis() as u64 => {
                    last_sent = t;
                    out.push(Kind::Repeat);
                }
                _ => out.push(Kind::Quiet),
            }
            continue;
        }
        hits.push(t);
        let met = match th {
            Threshold::Consecutive(n) => run >= n,
            Threshold::Window { times, within } => {
                let w = within.as_millis() as u64;
                hits.iter().filter(|&&h| t - h < w).count() as u32 >= times
            }
            Threshold::HeldFor(d) => t - start >= d.as_millis() as u64,
        };
        if met && !quiet {
            firing = true;
            last_sent = t;
            hits.clear();
            out.push(Kind::Fire);
        } else {
            out.push(Kind::Quiet);
        }
    }
    out
}

proptest! {
    #[test]
    fn the_machine_does_what_the_reference_model_does(
        th in threshold(),
        repeat in prop::option::of((1u64..10_000).prop_map(Duration::from_millis)),
        samples in samples(),
    ) {
        let mut m = StateMachine::new(th, repeat, None);
        let t0 = Instant::now();
        let mut t = t0;
        let got: Vec<Kind> = samples
            .iter()
            .map(|&(matched, quiet, dt)| {
                t += Duration::from_millis(dt);
                kind(&m.on_sample(matched, quiet, t))
            })
            .collect();
        prop_assert_eq!(got, reference(th, repeat, &samples));
    }

    #[test]
    fn firing_and_resolving_alternate_and_cooldown_is_kept(
        th in threshold(),
        cooldown in (0u64..20_000).prop_map(Duration::from_millis),
        samples in samples(),
    ) {
        let mut m = StateMachine::new(th, None, Some(cooldown));
        let mut t = Instant::now();
        let mut firing = false;
        let mut last_fire: Option<Instant> = None;
        for (matched, quiet, dt) in samples {
            t += Duration::from_millis(dt);
            match kind(&m.on_sample(matched, quiet, t)) {
                Kind::Fire => {
                    prop_assert!(!firing, "two firings without a resolve between them");
                    prop_assert!(matched && !quiet);
                    if let Some(last) = last_fire {
                        prop_assert!(t - last >= cooldown, "fired inside the cooldown");
                    }
                    firing = true;
                    last_fire = Some(t);
                }
                Kind::Resolve => {
                    prop_assert!(firing, "a resolve without a firing");
                    prop_assert!(!matched);
                    firing = false;
                }
                Kind::Repeat => prop_assert!(false, "repeat without `repeat`"),
                Kind::Quiet => {}
            }
            prop_assert_eq!(m.is_firing(), firing);
        }
    }
}
