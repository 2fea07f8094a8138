//! The state machine of one rule over one watch's state events: ok → pending → firing →
//! resolved (back to ok). It is fed one verdict per sample and the time of the sample,
//! never reads a clock, and so is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Threshold;

/// What a sample did to the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not matching, and nothing was pending or firing.
    Ok,
    /// Matching, threshold not met yet.
    Pending(Progress),
    /// A pending rule stopped matching before its threshold was met.
    Cleared,
    /// Threshold met, but held back; it fires at a later matching sample.
    Held(Hold),
    /// Starts firing: run `then`.
    Fire { count: u64 },
    /// Still firing; nothing to run.
    StillFiring,
    /// Still firing and `repeat` has passed since `then` last ran: run it again.
    Repeat { count: u64, duration: Duration },
    /// Stopped matching while firing: run `resolve`.
    Resolve { count: u64, duration: Duration },
}

/// How far a pending rule is from firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// `n` of `times` matching samples (consecutive, or within the window).
    Matches { n: u32, times: u32 },
    /// Matching for `held` of the `needed` duration.
    Held { held: Duration, needed: Duration },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The rule fired less than `cooldown` ago; this much of it is left.
    CoolingDown { left: Duration },
    /// A rule named in `unless` is firing.
    Suppressed,
}

#[derive(Debug, Clone)]
enum Phase {
    Ok,
    Pending {
        since: Instant,
        /// Times of the matching samples inside the window (`times` + `within` only).
        matches: VecDeque<Instant>,
        /// Every matching sample of this episode: consecutive ones for `times`, and
        /// `count` in templates.
        count: u64,
    },
    Firing {
        since: Instant,
        last_sent: Instant,
        count: u64,
    },
}

/// What survives a restart: whether the rule was firing, since when, and when it last
/// fired (for `cooldown`). Wall-clock times, since `Instant`s mean nothing to another
/// process. Pending progress is deliberately not kept: it is rebuilt within a few samples,
/// and a stale half-count could fire a rule on a single sample after a long stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub firing: Option<SavedFiring>,
    pub last_fired: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFiring {
    pub since: SystemTime,
    pub last_sent: SystemTime,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    threshold: Threshold,
    repeat: Option<Duration>,
    cooldown: Option<Duration>,
    phase: Phase,
    last_fired: Option<Instant>,
}

impl StateMachine {
    pub fn new(threshold: Threshold, repeat: Option<Duration>, cooldown: Option<Duration>) -> Self {
        StateMachine {
            threshold,
            repeat,
            cooldown,
            phase: Phase::Ok,
            last_fired: None,
        }
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }

    /// Whether a restart must remember anything of it: that it fires, or when it last
    /// fired, if a cooldown depends on that.
    pub fn worth_saving(&self) -> bool {
        self.is_firing() || (self.cooldown.is_some() && self.last_fired.is_some())
    }

    /// A sample arrived at `now`: `matched` is the condition's verdict, `quiet` whether a
    /// rule named in `unless` is firing.
    pub fn on_sample(&mut self, matched: bool, quiet: bool, now: Instant) -> Step {
        if !matched {
            return self.on_clear(now);
        }
        match &mut self.phase {
            Phase::Firing {
                since,
                last_sent,
                count,
            } => {
                *count += 1;
                match self.repeat {
                    Some(r) if !quiet && now.saturating_duration_since(*last_sent) >= r => {
                        *last_sent = now;
                        Step::Repeat {
                            count: *count,
                            duration: now.saturating_duration_since(*since),
                        }
                    }
                    _ => Step::StillFiring,
                }
            }
            Phase::Ok => {
                let mut matches = VecDeque::new();
                if let Threshold::Window { .. } = self.threshold {
                    matches.push_back(now);
                }
                self.phase = Phase::Pending {
                    since: now,
                    matches,
                    count: 1,
                };
                self.check_threshold(quiet, now)
            }
            Phase::Pending { matches, count, .. } => {
                if let Threshold::Window { .. } = self.threshold {
                    matches.push_back(now);
                }
                *count += 1;
                self.check_threshold(quiet, now)
            }
        }
    }

    fn on_clear(&mut self, now: Instant) -> Step {
        match &mut self.phase {
            Phase::Ok => Step::Ok,
            Phase::Firing { since, count, .. } => {
                let step = Step::Resolve {
                    count: *count,
                    duration: now.saturating_duration_since(*since),
                };
                self.phase = Phase::Ok;
                step
            }
            Phase::Pending { matches, .. } => {
                // In a window, earlier matches still count until they age out of it.
                if let Threshold::Window { within, .. } = self.threshold {
                    prune(matches, within, now);
                    if !matches.is_empty() {
                        return Step::Cleared;
                    }
                }
                self.phase = Phase::Ok;
                Step::Cleared
            }
        }
    }

    /// Called in `Pending` after a matching sample was recorded.
    fn check_threshold(&mut self, quiet: bool, now: Instant) -> Step {
        let Phase::Pending {
            since,
            matches,
            count,
        } = &mut self.phase
        else {
            return Step::Ok;
        };
        let progress = match self.threshold {
            Threshold::Consecutive(times) => Progress::Matches {
                n: u32::try_from(*count).unwrap_or(u32::MAX),
                times,
            },
            Threshold::Window { times, within } => {
                prune(matches, within, now);
                Progress::Matches {
                    n: matches.len().min(u32::MAX as usize) as u32,
                    times,
                }
            }
            Threshold::HeldFor(needed) => Progress::Held {
                held: now.saturating_duration_since(*since),
                needed,
            },
        };
        let met = match &progress {
            Progress::Matches { n, times } => n >= times,
            Progress::Held { held, needed } => held >= needed,
        };
        if !met {
            return Step::Pending(progress);
        }
        if let (Some(cd), Some(last)) = (self.cooldown, self.last_fired) {
            let since_last = now.saturating_duration_since(last);
            if since_last < cd {
                return Step::Held(Hold::CoolingDown {
                    left: cd - since_last,
                });
            }
        }
        if quiet {
            return Step::Held(Hold::Suppressed);
        }
        let count = *count;
        self.phase = Phase::Firing {
            since: now,
            last_sent: now,
            count,
        };
        self.last_fired = Some(now);
        Step::Fire { count }
    }

    /// The part worth keeping across a restart, in wall-clock time.
    pub fn save(&self, now: Instant, wall: SystemTime) -> Saved {
        let to_wall = |t: Instant| wall - now.saturating_duration_since(t);
        Saved {
            firing: match &self.phase {
                Phase::Firing {
                    since,
                    last_sent,
                    count,
                } => Some(SavedFiring {
                    since: to_wall(*since),
                    last_sent: to_wall(*last_sent),
                    count: *count,
                }),
                _ => None,
            },
            last_fired: self.last_fired.map(to_wall),
        }
    }

    /// Takes up a saved state. Times in the future (a clock stepped back) count as now.
    pub fn restore(&mut self, saved: &Saved, now: Instant, wall: SystemTime) {
        let to_instant = |t: SystemTime| {
            let ago = wall.duration_since(t).unwrap_or_default();
            now.checked_sub(ago).unwrap_or(now)
        };
        if let Some(f) = &saved.firing {
            self.phase = Phase::Firing {
                since: to_instant(f.since),
                last_sent: to_instant(f.last_sent),
                count: f.count,
            };
        }
        self.last_fired = saved.last_fired.map(to_instant);
    }

    /// `ok`, `pending` or `firing`, and since when (not for `ok`).
    pub fn phase(&self) -> (&'static str, Option<Instant>) {
        match self.phase {
            Phase::Ok => ("ok", None),
            Phase::Pending { since, .. } => ("pending", Some(since)),
            Phase::Firing { since, .. } => ("firing", Some(since)),
        }
    }

    /// Its counters and timers in words, for `hark explain`: `pending: 2 of 3 matching
    /// samples`, `firing for 4m 12s`, `cooldown ends in 30s`.
    pub fn describe(&self, now: Instant) -> Vec<String> {
        let d = crate::event::human_duration;
        let mut out = Vec::new();
        match &self.phase {
            Phase::Ok => out.push("ok: the last sample did not match".to_string()),
            Phase::Pending {
                since,
                matches,
                count,
            } => out.push(match self.threshold {
                Threshold::Consecutive(times) => format!(
                    "pending: {count} of {times} consecutive matching samples, since {} ago",
                    d(now.saturating_duration_since(*since))
                ),
                Threshold::Window { times, within } => {
                    let n = matches
                        .iter()
                        .filter(|t| now.saturating_duration_since(**t) < within)
                        .count();
                    format!(
                        "pending: {n} of {times} matching samples within {}",
                        d(within)
                    )
                }
                Threshold::HeldFor(needed) => format!(
                    "pending: matching for {} of {}",
                    d(now.saturating_duration_since(*since)),
                    d(needed)
                ),
            }),
            Phase::Firing {
                since,
                last_sent,
                count,
            } => {
                out.push(format!(
                    "firing for {} ({count} matching samples)",
                    d(now.saturating_duration_since(*since))
                ));
                if let Some(r) = self.repeat {
                    let next = (*last_sent + r).saturating_duration_since(now);
                    out.push(format!(
                        "its actions repeat in {} if it still matches",
                        d(next)
                    ));
                }
            }
        }
        if let (Some(cd), Some(last)) = (self.cooldown, self.last_fired) {
            let left = cd.saturating_sub(now.saturating_duration_since(last));
            if !left.is_zero() {
                out.push(format!("cooldown ends in {}", d(left)));
            }
        }
        out
    }

    /// How long the rule has been firing, if it is.
    pub fn firing_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Firing { since, .. } => Some(since),
            _ => None,
        }
    }
}

fn prune(matches: &mut VecDeque<Instant>, within: Duration, now: Instant) {
    while matches
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= within)
    {
        matches.pop_front();
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
