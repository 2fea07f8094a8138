//! What happens to a matching edge event: debounce, cooldown and the trigger limit.
//! Time is passed in, so every rule here is tested without sleeping.
//!
//! A match inside the cooldown is held, not dropped: the rule fires once when the
//! cooldown ends, standing for every match held (the trailing edge), so the last change
//! of a burst that came too soon still runs the action (a config edited again 2 s after
//! a reload is reloaded again). `during_cooldown = "drop"` drops them instead.

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
    /// Held: the rule fired less than `cooldown` ago. It fires once when the cooldown
    /// ends (in `left`), standing for the `held` matches held so far.
    Held { held: u64, left: Duration },
    /// Dropped: the rule fired less than `cooldown` ago (`during_cooldown = "drop"`).
    CoolingDown,
    /// Dropped: the rule fired `burst` times within `interval` already.
    TriggerLimited { first_hit: bool },
}

/// Which window ended at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A debounce window: its burst fires now, or is held by the cooldown.
    Debounce,
    /// The cooldown that held matches: they fire now.
    Cooldown,
}

/// Matches folded into one firing: a debounce window, or those held by the cooldown.
struct Window {
    burst: Burst,
    count: u64,
    ends: Instant,
}

/// The events of a burst folded into one firing.
#[derive(Debug, Clone)]
pub struct Burst {
    /// The first: what the firing is about.
    pub event: Arc<Event>,
    /// The last.
    pub last: Arc<Event>,
    /// The kinds its events had (`create`, `delete`, ...), in the order first seen.
    pub kinds: Vec<Arc<str>>,
}

/// Kinds a burst remembers at most (a file watch has five).
const KINDS_MAX: usize = 16;

impl Burst {
    fn of(event: &Arc<Event>) -> Burst {
        let mut b = Burst {
            event: Arc::clone(event),
            last: Arc::clone(event),
            kinds: Vec::new(),
        };
        b.note_kind(event);
        b
    }

    fn add(&mut self, event: &Arc<Event>) {
        self.last = Arc::clone(event);
        self.note_kind(event);
    }

    /// Another burst's events after this one's.
    fn join(&mut self, later: &Burst) {
        self.last = Arc::clone(&later.last);
        for k in &later.kinds {
            if !self.kinds.contains(k) && self.kinds.len() < KINDS_MAX {
                self.kinds.push(Arc::clone(k));
            }
        }
    }

    fn note_kind(&mut self, event: &Event) {
        if let Some(k) = event.kind() {
            if !self.kinds.iter().any(|x| &**x == k) && self.kinds.len() < KINDS_MAX {
                self.kinds.push(Arc::from(k));
            }
        }
    }
}

pub struct EdgeGate {
    debounce: Option<Duration>,
    cooldown: Option<Duration>,
    limit: Option<TriggerLimit>,
    window: Option<Window>,
    /// Matches held while cooling down.
    held: Option<Window>,
    /// `during_cooldown = "drop"`.
    drop_in_cooldown: bool,
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
            held: None,
            drop_in_cooldown: false,
            last_fire: None,
            recent_fires: VecDeque::new(),
            limit_reported: false,
        }
    }

    /// Matches inside the cooldown are dropped instead of held (`during_cooldown =
    /// "drop"`).
    pub fn dropping_in_cooldown(mut self, drop: bool) -> Self {
        self.drop_in_cooldown = drop;
        self
    }

    /// A matching event arrived at `now`.
    pub fn on_match(&mut self, event: &Arc<Event>, now: Instant) -> Verdict {
        if let Some(d) = self.debounce {
            match &mut self.window {
                Some(w) => {
                    w.count += 1;
                    w.burst.add(event);
                }
                None => {
                    self.window = Some(Window {
                        burst: Burst::of(event),
                        count: 1,
                        ends: now + d,
                    })
                }
            }
            return Verdict::Debounced;
        }
        self.fire_or_hold(&Burst::of(event), 1, now)
    }

    /// When the open debounce window or the cooldown holding matches ends, if either.
    pub fn deadline(&self) -> Option<Instant> {
        [&self.window, &self.held]
            .into_iter()
            .flatten()
            .map(|w| w.ends)
            .min()
    }

    /// A burst whose window ended by `now` (a debounce window, or the cooldown that held
    /// matches): which, its first event and the verdict. Call until `None`.
    pub fn on_tick(&mut self, now: Instant) -> Option<(Ended, Burst, Verdict)> {
        if self.window.as_ref().is_some_and(|w| w.ends <= now) {
            let w = self.window.take()?;
            let verdict = self.fire_or_hold(&w.burst, w.count, now);
            return Some((Ended::Debounce, w.burst, verdict));
        }
        if self.held.as_ref().is_some_and(|w| w.ends <= now) {
            let w = self.held.take()?;
            let verdict = self.try_fire(w.count, now);
            return Some((Ended::Cooldown, w.burst, verdict));
        }
        None
    }

    /// Fires `count` matches now, or holds them until the cooldown ends.
    fn fire_or_hold(&mut self, burst: &Burst, count: u64, now: Instant) -> Verdict {
        if let (false, Some(cd), Some(last)) =
            (self.drop_in_cooldown, self.cooldown, self.last_fire)
        {
            let ends = last + cd;
            if now < ends {
                match &mut self.held {
                    Some(h) => h.burst.join(burst),
                    None => {
                        self.held = Some(Window {
                            burst: burst.clone(),
                            count: 0,
                            ends,
                        })
                    }
                }
                let Some(held) = self.held.as_mut() else {
                    return Verdict::CoolingDown;
                };
                held.count += count;
                return Verdict::Held {
                    held: held.count,
                    left: ends - now,
                };
            }
        }
        self.try_fire(count, now)
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
        if let Some(h) = &self.held {
            out.push(format!(
                "{} matching event(s) held by the cooldown: fires once in {}",
                h.count,
                d(h.ends.saturating_duration_since(now))
            ));
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

    fn ev_kind(kind: &str, path: &str) -> Arc<Event> {
        let mut e = (*ev()).clone();
        e.fields.insert("kind".into(), kind.into());
        e.fields.insert("path".into(), path.into());
        Arc::new(e)
    }

    #[test]
    fn a_burst_keeps_its_last_event_and_the_kinds_it_saw() {
        // A git checkout: the file deleted, made anew, written.
        let mut g = EdgeGate::new(Some(MS * 50), None, None);
        let t = Instant::now();
        g.on_match(&ev_kind("delete", "/a.conf"), t);
        g.on_match(&ev_kind("create", "/a.conf"), t + MS);
        g.on_match(&ev_kind("modify", "/a.conf"), t + MS * 2);
        g.on_match(&ev_kind("create", "/b.conf"), t + MS * 3);
        let (_, b, _) = g.on_tick(t + MS * 50).unwrap();
        assert_eq!(b.event.kind(), Some("delete"));
        assert_eq!(b.last.kind(), Some("create"));
        assert_eq!(b.last.fields["path"], "/b.conf");
        let kinds: Vec<&str> = b.kinds.iter().map(|k| &**k).collect();
        assert_eq!(kinds, ["delete", "create", "modify"]);
    }

    #[test]
    fn without_limits_every_match_fires() {
        let mut g = EdgeGate::new(None, None, None);
        let t = Instant::now();
        for i in 0..100 {
            assert_eq!(g.on_match(&ev(), t + MS * i), Verdict::Fire { count: 1 });
        }
    }

    #[test]
    fn during_cooldown_drop_drops_matches_until_it_ends() {
        let mut g = EdgeGate::new(None, Some(MS * 100), None).dropping_in_cooldown(true);
        let t = Instant::now();
        assert_eq!(g.on_match(&ev(), t), Verdict::Fire { count: 1 });
        assert_eq!(g.on_match(&ev(), t + MS * 99), Verdict::CoolingDown);
        assert!(g.deadline().is_none());
        assert_eq!(g.on_match(&ev(), t + MS * 100), Verdict::Fire { count: 1 });
    }

    #[test]
    fn matches_inside_the_cooldown_fire_once_when_it_ends_with_their_count() {
        let mut g = EdgeGate::new(None, Some(MS * 100), None);
        let t = Instant::now();
        assert_eq!(g.on_match(&ev(), t), Verdict::Fire { count: 1 });
        let first_held = ev();
        assert_eq!(
            g.on_match(&first_held, t + MS * 20),
            Verdict::Held {
                held: 1,
                left: MS * 80
            }
        );
        assert_eq!(
            g.on_match(&ev(), t + MS * 90),
            Verdict::Held {
                held: 2,
                left: MS * 10
            }
        );
        assert_eq!(g.deadline(), Some(t + MS * 100));
        assert!(g.on_tick(t + MS * 99).is_none());
        let (ended, b, v) = g.on_tick(t + MS * 100).unwrap();
        assert_eq!(ended, Ended::Cooldown);
        assert!(Arc::ptr_eq(&b.event, &first_held));
        assert_eq!(v, Verdict::Fire { count: 2 });
        assert!(g.on_tick(t + MS * 100).is_none());
        // That firing starts a cooldown of its own.
        assert!(matches!(
            g.on_match(&ev(), t + MS * 150),
            Verdict::Held { held: 1, .. }
        ));
    }

    #[test]
    fn a_debounced_burst_inside_the_cooldown_is_held_to_its_end() {
        // The README's example: debounce 1s, cooldown 10s, a second burst 3 s after the
        // first firing.
        let s = Duration::from_secs(1);
        let mut g = EdgeGate::new(Some(s), Some(s * 10), None);
        let t = Instant::now();
        assert_eq!(g.on_match(&ev(), t), Verdict::Debounced);
        assert_eq!(g.on_tick(t + s).unwrap().2, Verdict::Fire { count: 1 });
        for i in 0..50 {
            assert_eq!(g.on_match(&ev(), t + s * 3 + MS * i), Verdict::Debounced);
        }
        let (ended, _, v) = g.on_tick(t + s * 4).unwrap();
        assert_eq!(ended, Ended::Debounce);
        assert_eq!(
            v,
            Verdict::Held {
                held: 50,
                left: s * 7
            }
        );
        assert_eq!(g.deadline(), Some(t + s * 11));
        assert_eq!(
            g.on_tick(t + s * 11).unwrap().2,
            Verdict::Fire { count: 50 }
        );
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
        let (_, b, v) = g.on_tick(t + MS * 50).unwrap();
        assert!(Arc::ptr_eq(&b.event, &first));
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
