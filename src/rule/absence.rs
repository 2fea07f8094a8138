//! `expect_within`: a rule that fires when no match came for this long (per group with
//! `group_by`), and resolves at the next. The window runs from the last match, or from
//! when the rule was first loaded; the groups themselves live in expected.rs.

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

pub(super) struct Absent {
    within: Duration,
    wall: WallClock,
    book: Book,
}

impl Absent {
    pub fn new(head: &Head, within: Duration, host: Arc<str>, wall: WallClock) -> Absent {
        let mut a = Absent {
            within,
            wall,
            book: Book::new(host),
        };
        let now = Instant::now();
        let due = a.due();
        a.book.start(head, now, wall.at(now), &due);
        a
    }

    /// When a window from a mark ends.
    fn due(&self) -> impl Fn(SystemTime) -> Option<SystemTime> {
        let within = self.within;
        move |from| from.checked_add(within)
    }

    pub fn judge(&mut self, head: &Head, heard: Heard<'_>) -> Judged {
        if !heard.matched {
            return Judged::of(RuleVerdict::NoMatch);
        }
        let due = self.due();
        let wall = self.wall.at(heard.now);
        self.book.judge(head, &heard, wall, &due)
    }

    pub fn tick(&mut self, head: &Head, now: Instant, out: &mut Ticked) {
        self.book.tick(head, now, self.wall.at(now), out);
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.book.deadline()
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
        let wall = self.wall.at(now);
        let zone = jiff::tz::TimeZone::system();
        let show = |t| crate::config::show_in(&zone, t);
        self.book
            .rows(head, now, &|g: &Awaited| g.describe(&show, wall), out);
    }

    pub fn idle_notes(&self, _head: &Head, _now: Instant) -> Vec<String> {
        vec![format!(
            "expects a match at least every {}; no group has matched yet",
            humantime::format_duration(self.within)
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

    /// A stored group; `wall` is the system's, the rule reads its own clock.
    pub fn restore(
        &mut self,
        head: &Head,
        key: &str,
        bytes: &[u8],
        now: Instant,
        _wall: SystemTime,
    ) -> Restored {
        let (due, wall) = (self.due(), self.wall.at(now));
        self.book.restore(head, key, bytes, now, wall, &due)
    }

    pub fn carry(&mut self, head: &Head, old: &Absent, now: Instant, _wall: SystemTime) {
        let (due, wall) = (self.due(), self.wall.at(now));
        self.book.carry(head, &old.book, now, wall, &due);
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
