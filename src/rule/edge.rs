//! What happens to a matching edge event: debounce, cooldown and the trigger limit.
//! Time is passed in, so every rule here is tested without sleeping.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::TriggerLimit;
use crate::event::Event;

/// The verdict on one match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fire now, standing for `count` matches.
    Fire { count: u64 },
    /// Folded into the open debounce window; it fires when the window ends.
    Debounced,
    /// Dropped: the rule fired less than `cooldown` ago.
    CoolingDown,
    /// Dropped: the rule fired `burst` times within `interval` already.
    TriggerLimited { first_hit: bool },
}

struct Window {
    event: Arc<Event>,
    count: u64,
    ends: Instant,
}

pub struct EdgeGate {
    debounce: Option<Duration>,
    cooldown: Option<Duration>,
    limit: Option<TriggerLimit>,
    window: Option<Window>,
    last_fire: Option<Instant>,
    recent_fires: VecDeque<Instant>,
    limit_reported: bool,
}

impl EdgeGate {
    pub fn new(
        debounce: Option<Duration>,
        cooldown: Option<Duration>,
        limit: Option<TriggerLimit>,
    ) -> Self {
        EdgeGate {
            debounce: debounce.filter(|d| !d.is_zero()),
            cooldown,
            limit,
            window: None,
            last_fire: None,
            recent_fires: VecDeque::new(),
            limit_reported: false,
        }
    }

    /// A matching event arrived at `now`.
    pub fn on_match(&mut self, event: &Arc<Event>, now: Instant) -> Verdict {
        if let Some(d) = self.debounce {
            match &mut self.window {
                Some(w) => w.count += 1,
                None => {
                    self.window = Some(Window {
                        event: Arc::clone(event),
                        count: 1,
                        ends: now + d,
                    })
                }
            }
            return Verdict::Debounced;
        }
        self.try_fire(1, now)
    }

    /// When the open debounce window ends, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.window.as_ref().map(|w| w.ends)
    }

    /// The window's burst, if it has ended by `now`: its first event and the verdict.
    pub fn on_tick(&mut self, now: Instant) -> Option<(Arc<Event>, Verdict)> {
        if self.window.as_ref().is_none_or(|w| w.ends > now) {
            return None;
        }
        let w = self.window.take()?;
        let verdict = self.try_fire(w.count, now);
        Some((w.event, verdict))
    }

    /// Its timers and counters in words, for `hark explain`.
    pub fn describe(&self, now: Instant) -> Vec<String> {
        let d = crate::event::human_duration;
        let mut out = Vec::new();
        if let Some(w) = &self.window {
            out.push(format!(
                "debounce window open: {} matching event(s), fires in {}",
                w.count,
                d(w.ends.saturating_duration_since(now))
            ));
        }
        if let (Some(cd), Some(last)) = (self.cooldown, self.last_fire) {
            let left = cd.saturating_sub(now.saturating_duration_since(last));
            if !left.is_zero() {
                out.push(format!("cooldown ends in {}", d(left)));
            }
        }
        if let Some(limit) = self.limit {
            let recent = self
                .recent_fires
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < limit.interval)
                .count();
            out.push(format!(
                "trigger limit: fired {recent} of at most {} times in the last {}",
                limit.burst,
                d(limit.interval)
            ));
        }
        if let Some(last) = self.last_fire {
            out.push(format!(
                "last fired {} ago",
                d(now.saturating_duration_since(last))
            ));
        }
        out
    }

    pub(super) fn try_fire(&mut self, count: u64, now: Instant) -> Verdict {
        if let (Some(cd), Some(last)) = (self.cooldown, self.last_fire) {
            if now.saturating_duration_since(last) < cd {
                return Verdict::CoolingDown;
            }
        }
        if let Some(limit) = self.limit {
            while self
                .recent_fires
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= limit.interval)
            {
                self.recent_fires.pop_front();
            }
            if self.recent_fires.len() >= limit.burst as usize {
                let first_hit = !self.limit_reported;
                self.limit_reported = true;
                return Verdict::TriggerLimited { first_hit };
            }
            self.limit_reported = false;
            self.recent_fires.push_back(now);
        }
        self.last_fire = Some(now);
        Verdict::Fire { count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn ev() -> Arc<Event> {
        Arc::new(Event {
            watch: "w".into(),
            source: "file",
            time: SystemTime::now(),
            host: "h".into(),
            edge: true,
            fields: Default::default(),
            cursor: None,
        })
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_limits_every_match_fires() {
        let mut g = EdgeGate::new(None, None, None);
        let t = Instant::now();
        for i in 0..100 {
            assert_eq!(g.on_match(&ev(), t + MS * i), Verdict::Fire { count: 1 });
        }
    }

    #[test]
    fn cooldown_drops_matches_until_it_ends() {
        let mut g = EdgeGate::new(None, Some(MS * 100), None);
        let t = Instant::now();
        assert_eq!(g.on_match(&ev(), t), Verdict::Fire { count: 1 });
        assert_eq!(g.on_match(&ev(), t + MS * 99), Verdict::CoolingDown);
        assert_eq!(g.on_match(&ev(), t + MS * 100), Verdict::Fire { count: 1 });
    }

    #[test]
    fn a_debounced_burst_fires_once_with_its_count() {
        let mut g = EdgeGate::new(Some(MS * 50), None, None);
        let t = Instant::now();
        let first = ev();
        assert_eq!(g.on_match(&first, t), Verdict::Debounced);
        assert_eq!(g.on_match(&ev(), t + MS * 10), Verdict::Debounced);
        assert_eq!(g.on_match(&ev(), t + MS * 49), Verdict::Debounced);
        assert!(g.on_tick(t + MS * 49).is_none());
        let (e, v) = g.on_tick(t + MS * 50).unwrap();
        assert!(Arc::ptr_eq(&e, &first));
        assert_eq!(v, Verdict::Fire { count: 3 });
        assert!(g.deadline().is_none());
    }

    #[test]
    fn the_trigger_limit_bites_and_recovers() {
        let limit = TriggerLimit {
            burst: 3,
            interval: MS * 1000,
        };
        let mut g = EdgeGate::new(None, None, Some(limit));
        let t = Instant::now();
        for i in 0..3 {
            assert_eq!(g.on_match(&ev(), t + MS * i), Verdict::Fire { count: 1 });
        }
        assert_eq!(
            g.on_match(&ev(), t + MS * 5),
            Verdict::TriggerLimited { first_hit: true }
        );
        assert_eq!(
            g.on_match(&ev(), t + MS * 6),
            Verdict::TriggerLimited { first_hit: false }
        );
        // The first firing leaves the window at t+1000.
        assert_eq!(g.on_match(&ev(), t + MS * 1000), Verdict::Fire { count: 1 });
    }
}
