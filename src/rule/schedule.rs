//! `expect`: a cron schedule (with `grace` and `timezone`) a rule's matches must keep:
//! after each scheduled time a match must come before the grace ends, else the rule
//! fires (once); the next match resolves it. Scheduled times are wall-clock times in the
//! rule's zone; the wait for them runs on the monotonic clock, worked out again when the
//! wall clock steps (NTP, a person's `date`) and at least once a minute (a suspend, which
//! the monotonic clock does not count). The groups live in expected.rs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::awaited::Awaited;
use super::expected::Book;
use super::head::Head;
use super::judged::{GroupCount, Heard, Judged, Restored, Ticked};
use super::rows::Row;
use super::verdict::RuleVerdict;
use super::wall::WallClock;
use crate::config::Schedule;

/// How often the wall clock is read again while a schedule waits.
const RECHECK: Duration = Duration::from_secs(60);
/// A difference between the two clocks larger than this is a step of the wall clock.
const STEP: Duration = Duration::from_secs(1);

pub(super) struct Scheduled {
    schedule: Schedule,
    wall: WallClock,
    book: Book,
    /// When the clocks were last compared, and the wall clock's lead then.
    checked: (Instant, SystemTime),
}

impl Scheduled {
    pub fn new(head: &Head, schedule: Schedule, host: Arc<str>, wall: WallClock) -> Scheduled {
        let now = Instant::now();
        let mut s = Scheduled {
            schedule,
            wall,
            book: Book::new(host),
            checked: (now, wall.at(now)),
        };
        let (schedule, wall) = (&s.schedule, s.checked.1);
        s.book
            .start(head, now, wall, &|from| schedule.due_after(from));
        s
    }

    pub fn judge(&mut self, head: &Head, heard: Heard<'_>) -> Judged {
        if !heard.matched {
            return Judged::of(RuleVerdict::NoMatch);
        }
        let wall = self.wall.at(heard.now);
        let schedule = &self.schedule;
        self.book
            .judge(head, &heard, wall, &|from| schedule.due_after(from))
    }

    pub fn tick(&mut self, head: &Head, now: Instant, out: &mut Ticked) {
        let wall = self.wall.at(now);
        let (at, then) = self.checked;
        let expected = then + now.saturating_duration_since(at);
        let stepped = match wall.duration_since(expected) {
            Ok(ahead) => ahead > STEP,
            Err(behind) => behind.duration() > STEP,
        };
        if stepped {
            tracing::info!(rule = %head.name, "the wall clock stepped: the schedule's deadlines are worked out again");
            self.book.reschedule(now, wall);
        }
        self.checked = (now, wall);
        self.book.tick(head, now, wall, out);
    }

    pub fn deadline(&self) -> Option<Instant> {
        let recheck = self.checked.0 + RECHECK;
        Some(self.book.deadline().map_or(recheck, |d| d.min(recheck)))
    }

    pub fn next_due(&self) -> Option<SystemTime> {
        self.book.next_due()
    }

    pub fn is_firing(&self) -> bool {
        self.book.is_firing()
    }

    pub fn firing_since(&self) -> Option<Instant> {
        self.book.firing_since()
    }

    pub fn is_empty(&self) -> bool {
        true
    }

    pub fn rows(&self, head: &Head, now: Instant, out: &mut Vec<Row>) {
        // What it expects is said once, above the groups (explain.rs).
        let (wall, s) = (self.wall.at(now), &self.schedule);
        let show = |t| s.show(t);
        self.book
            .rows(head, now, &|g: &Awaited| g.describe(&show, wall), out);
    }

    pub fn idle_notes(&self, _head: &Head, now: Instant) -> Vec<String> {
        let s = &self.schedule;
        let next = s
            .next_after(self.wall.at(now))
            .map_or("never".to_string(), |t| s.show(t));
        vec![format!(
            "expects a match after each \"{}\" ({}) within {}; next scheduled {next}; no group has matched yet",
            s.text,
            s.zone_name,
            humantime::format_duration(s.grace)
        )]
    }

    pub fn save(&self, key: &str, _now: Instant, _wall: SystemTime) -> Option<Vec<u8>> {
        self.book.save(key)
    }

    pub fn save_all(&self, _now: Instant, _wall: SystemTime) -> Vec<(String, Vec<u8>)> {
        self.book.save_all()
    }

    pub fn firing_keys(&self) -> Vec<String> {
        self.book.firing_keys()
    }

    /// A stored group; `wall` is the system's, the schedule reads its own clock.
    pub fn restore(
        &mut self,
        head: &Head,
        key: &str,
        bytes: &[u8],
        now: Instant,
        _wall: SystemTime,
    ) -> Restored {
        let wall = self.wall.at(now);
        let schedule = &self.schedule;
        self.book.restore(head, key, bytes, now, wall, &|from| {
            schedule.due_after(from)
        })
    }

    pub fn carry(&mut self, head: &Head, old: &Scheduled, now: Instant, _wall: SystemTime) {
        let wall = self.wall.at(now);
        let schedule = &self.schedule;
        self.book
            .carry(head, &old.book, now, wall, &|from| schedule.due_after(from));
    }

    pub fn start_keys(&self) -> Vec<Arc<str>> {
        self.book.keys().cloned().collect()
    }

    pub fn firing_counts(&self, out: &mut BTreeMap<Arc<str>, u64>) {
        self.book.firing_counts(out)
    }

    pub fn groups(&self) -> GroupCount {
        self.book.groups()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::test_support::load;

    #[test]
    fn a_wall_clock_step_moves_the_deadlines_to_the_new_time() {
        let (_d, config) = load(
            "[watch.beat]\ntype = \"heartbeat\"\n[rule.r]\nwatch = \"beat\"\nexpect = \"0 3 * * *\"\n\
             grace = \"10m\"\ntimezone = \"UTC\"\n",
        );
        let head = Head::new(&config.rules["r"]);
        let Some(crate::config::Expect::Schedule(s)) = config.rules["r"]
            .expectation
            .as_ref()
            .map(|e| e.expect.clone())
        else {
            panic!("a schedule")
        };
        let t0 = Instant::now();
        let start: SystemTime = "2026-06-01T02:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .into();
        let mut m = Scheduled::new(&head, *s, Arc::from("h"), WallClock::starting(t0, start));
        // Due at 03:10, 70 minutes on.
        assert_eq!(m.book.deadline(), Some(t0 + Duration::from_secs(4200)));
        // The wall clock is set an hour forward: at the next tick, 03:10 is 10 minutes on.
        let ahead = start + Duration::from_secs(3600);
        m.wall = WallClock::starting(t0, ahead);
        let mut out = Ticked::default();
        m.tick(&head, t0 + Duration::from_secs(60), &mut out);
        assert!(out.firings.is_empty());
        assert_eq!(m.book.deadline(), Some(t0 + Duration::from_secs(600)));
        m.tick(&head, t0 + Duration::from_secs(600), &mut out);
        assert_eq!(out.firings.len(), 1, "fires at 03:10 of the new time");
    }
}
