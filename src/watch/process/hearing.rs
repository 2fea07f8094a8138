//! What the process connector told the monitor between passes, and whether a pass may
//! look at just that instead of listing /proc.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::connector::Heard;

/// Even while the connector is trusted, a pass lists /proc this often: it forgets the
/// zombies reaped since (their reaping makes no event) and catches whatever the kernel
/// could not tell.
const LIST_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// At most this many pids wait for the next pass; more, and it lists /proc.
const TOUCHED_MAX: usize = 65_536;

pub struct Hearing {
    /// The probe whose fork must be heard before the connector is trusted.
    probe: Option<i32>,
    trusted: bool,
    /// Forked or ended since the last pass.
    touched: HashSet<i32>,
    /// The next pass lists /proc.
    list_next: bool,
    last_listing: Instant,
}

impl Hearing {
    /// Untrusted until the probe's fork is heard (never, without a probe).
    pub fn new(probe: Option<i32>) -> Hearing {
        Hearing {
            probe,
            trusted: false,
            touched: HashSet::new(),
            list_next: true,
            last_listing: Instant::now(),
        }
    }

    /// Takes up what was heard; returns the pids that exec'd, to be checked at once.
    pub fn take(&mut self, heard: Heard) -> Vec<i32> {
        if !self.trusted && self.probe.is_some_and(|p| heard.forks.contains(&p)) {
            self.trusted = true;
            tracing::debug!("the process connector hears this pid namespace: passes look only at the processes it names");
        }
        // A pass that lists /proc sees everything: nothing to keep for it. A fork storm
        // between two passes far apart is held to `TOUCHED_MAX` pids: past that, the
        // next pass lists /proc instead.
        if !self.list_next {
            self.touched.extend(heard.forks);
            self.touched.extend(heard.exits);
            if self.touched.len() > TOUCHED_MAX {
                self.touched = HashSet::new();
                self.list_next = true;
            }
        }
        heard.execs
    }

    /// The kernel dropped events: the next pass lists /proc.
    pub fn lost(&mut self) {
        self.list_next = true;
    }

    /// The connector is gone: every pass lists /proc from now on.
    pub fn lost_for_good(&mut self) {
        self.trusted = false;
        self.probe = None;
    }

    /// For the pass about to run: the pids to look at, or `None` to list /proc. What was
    /// heard until now is the pass's; what is heard during it, the next one's.
    pub fn next_pass(&mut self) -> Option<HashSet<i32>> {
        let touched = std::mem::take(&mut self.touched);
        let list =
            !self.trusted || self.list_next || self.last_listing.elapsed() >= LIST_AT_LEAST_EVERY;
        if list {
            self.list_next = false;
            self.last_listing = Instant::now();
            return None;
        }
        Some(touched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(forks: &[i32], exits: &[i32], execs: &[i32]) -> Heard {
        Heard {
            execs: execs.to_vec(),
            forks: forks.to_vec(),
            exits: exits.to_vec(),
        }
    }

    #[test]
    fn passes_list_proc_until_the_probe_is_heard() {
        let mut h = Hearing::new(Some(77));
        assert_eq!(h.next_pass(), None, "the first pass lists /proc");
        assert_eq!(h.take(heard(&[5], &[], &[9])), vec![9]);
        assert_eq!(h.next_pass(), None, "not trusted yet");
        h.take(heard(&[77, 6], &[77, 4], &[]));
        assert_eq!(h.next_pass(), Some(HashSet::from([77, 6, 4])));
        assert_eq!(h.next_pass(), Some(HashSet::new()));
        h.lost();
        assert_eq!(h.next_pass(), None, "events were dropped");
        h.take(heard(&[8], &[], &[]));
        assert_eq!(h.next_pass(), Some(HashSet::from([8])));
        h.lost_for_good();
        assert_eq!(h.next_pass(), None);
        assert_eq!(h.next_pass(), None);
    }

    #[test]
    fn a_fork_storm_between_passes_makes_the_next_one_list_proc() {
        let mut h = Hearing::new(Some(1));
        h.take(heard(&[1], &[], &[]));
        assert_eq!(h.next_pass(), None);
        let storm: Vec<i32> = (2..=TOUCHED_MAX as i32 + 2).collect();
        h.take(heard(&storm, &[], &[]));
        h.take(heard(&[5], &[], &[]));
        assert_eq!(h.next_pass(), None);
        assert_eq!(h.next_pass(), Some(HashSet::new()));
    }

    #[test]
    fn without_a_probe_every_pass_lists_proc() {
        let mut h = Hearing::new(None);
        h.take(heard(&[1], &[], &[]));
        assert_eq!(h.next_pass(), None);
        assert_eq!(h.next_pass(), None);
    }

    #[test]
    fn a_trusted_connector_still_lists_proc_once_a_minute() {
        let mut h = Hearing::new(Some(1));
        h.take(heard(&[1], &[], &[]));
        assert_eq!(h.next_pass(), None);
        assert!(h.next_pass().is_some());
        h.last_listing -= LIST_AT_LEAST_EVERY;
        assert_eq!(h.next_pass(), None);
        assert!(h.next_pass().is_some());
    }
}
