//! A rule's verdict on one event, in words: what `hark test` prints (and later `hark tail`).

use std::fmt;
use std::sync::Arc;

use super::edge::{Ended, Verdict};
use super::state::{Hold, Progress, Step};
use crate::event::{Event, Firing};

/// One rule's decision on one event.
#[derive(Debug)]
pub struct Decision {
    pub rule: Arc<str>,
    pub verdict: RuleVerdict,
    /// What to run now, if anything.
    pub firing: Option<Firing>,
}

impl Decision {
    /// The rule could not judge the event (a field to group by is missing, no room).
    pub fn error(rule: &Arc<str>, e: String) -> Decision {
        Decision {
            rule: Arc::clone(rule),
            verdict: RuleVerdict::Error(e),
            firing: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleVerdict {
    NoMatch,
    /// The condition could not be evaluated (a missing field, a type error).
    Error(String),
    /// An edge event matched but a rule named in `unless` is firing.
    Suppressed(Arc<str>),
    Edge(Verdict),
    State(Step),
}

impl RuleVerdict {
    pub fn matched(&self) -> bool {
        match self {
            RuleVerdict::NoMatch | RuleVerdict::Error(_) => false,
            RuleVerdict::Suppressed(_) | RuleVerdict::Edge(_) => true,
            RuleVerdict::State(s) => !matches!(s, Step::Ok | Step::Cleared | Step::Resolve { .. }),
        }
    }
}

impl RuleVerdict {
    /// A short code for tools (`hark tail --json`).
    pub fn code(&self) -> &'static str {
        match self {
            RuleVerdict::NoMatch => "no_match",
            RuleVerdict::Error(_) => "error",
            RuleVerdict::Suppressed(_) => "suppressed",
            RuleVerdict::Edge(v) => match v {
                Verdict::Fire { .. } => "firing",
                Verdict::Debounced => "debounced",
                Verdict::Held { .. } => "held",
                Verdict::CoolingDown => "cooling_down",
                Verdict::TriggerLimited { .. } => "trigger_limited",
            },
            RuleVerdict::State(s) => match s {
                Step::Ok => "no_match",
                Step::Cleared => "cleared",
                Step::Pending(_) => "pending",
                Step::Held(Hold::CoolingDown { .. }) => "cooling_down",
                Step::Held(Hold::Suppressed) => "suppressed",
                Step::Fire { .. } => "firing",
                Step::StillFiring => "still_firing",
                Step::Repeat { .. } => "repeat",
                Step::Resolve { .. } => "resolved",
            },
        }
    }
}

fn d(d: std::time::Duration) -> String {
    crate::event::human_duration(d)
}

impl fmt::Display for RuleVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleVerdict::NoMatch => f.write_str("does not match"),
            RuleVerdict::Error(e) => write!(f, "cannot be evaluated: {e}"),
            RuleVerdict::Suppressed(by) => {
                write!(f, "matches; suppressed by `unless` (rule `{by}` is firing)")
            }
            RuleVerdict::Edge(v) => match v {
                Verdict::Fire { .. } => f.write_str("matches; fires"),
                Verdict::Debounced => f.write_str("matches; fires when its debounce window ends"),
                Verdict::Held { held, left } => write!(
                    f,
                    "matches; cooling down: held, fires once when it ends in {} ({held} held)",
                    d(*left)
                ),
                Verdict::CoolingDown => f.write_str("matches; cooling down: dropped"),
                Verdict::TriggerLimited { .. } => f.write_str("matches; trigger limit hit"),
            },
            RuleVerdict::State(s) => match s {
                Step::Ok => f.write_str("does not match; ok"),
                Step::Cleared => f.write_str("does not match; pending cleared"),
                Step::Pending(Progress::Matches { n, times }) => {
                    write!(
                        f,
                        "matches; pending {n}/{times} (fires after {times} matches)"
                    )
                }
                Step::Pending(Progress::Held { held, needed }) => {
                    write!(
                        f,
                        "matches; pending, held {} of {} (`for`)",
                        d(*held),
                        d(*needed)
                    )
                }
                Step::Held(Hold::CoolingDown { left }) => {
                    write!(
                        f,
                        "matches; threshold met, cooling down for {} more",
                        d(*left)
                    )
                }
                Step::Held(Hold::Suppressed) => {
                    f.write_str("matches; threshold met, suppressed by `unless`")
                }
                Step::Fire { .. } => f.write_str("matches; fires"),
                Step::StillFiring => f.write_str("matches; still firing"),
                Step::Repeat { .. } => f.write_str("matches; still firing, repeats its actions"),
                Step::Resolve { .. } => f.write_str("does not match; resolves"),
            },
        }
    }
}

/// A window that ended at a tick (a debounce window, a cooldown that held matches), and
/// what came of it, in words for `hark tail`.
#[derive(Debug, Clone)]
pub struct TickNote {
    pub rule: Arc<str>,
    pub watch: Arc<str>,
    /// `firing`, `held`, `trigger_limited`.
    pub code: &'static str,
    pub text: String,
}

impl TickNote {
    pub(super) fn of(rule: &Arc<str>, event: &Event, ended: Ended, verdict: &Verdict) -> TickNote {
        let watch = &event.watch;
        let d = crate::event::human_duration;
        let what = match ended {
            Ended::Debounce => "debounce window ended",
            Ended::Cooldown => "cooldown ended",
        };
        let (code, text) = match verdict {
            Verdict::Fire { count } => ("firing", format!("{what}; fires for {count} matching event(s)")),
            Verdict::Held { held, left } => (
                "held",
                format!(
                    "{what} inside the cooldown; held: fires once when it ends in {}, for {held} matching event(s)",
                    d(*left)
                ),
            ),
            Verdict::CoolingDown => ("cooling_down", format!("{what}; dropped: cooling down")),
            Verdict::TriggerLimited { .. } => ("trigger_limited", format!("{what}; trigger limit hit")),
            Verdict::Debounced => ("debounced", what.to_string()),
        };
        TickNote {
            rule: Arc::clone(rule),
            watch: Arc::clone(watch),
            code,
            text,
        }
    }
}
