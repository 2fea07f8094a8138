//! What each watched directory held, so that after a kernel queue overflow hark can say
//! which entries were created and deleted while events were lost, each once.
//!
//! Per directory: the names found when it was last read (one buffer, each name followed by
//! a NUL: about the name's length plus one byte per entry, no allocation per name), and a
//! journal of the creates and deletes inotify reported since. Recording an event is an
//! append (constant work, whatever the burst); when the journal outgrows the snapshot, it
//! is folded into a new snapshot (amortised constant). The directory is not read again
//! for that: events still waiting in the kernel's queue would then count as known, and an
//! overflow among them would lose them. What the directory held before the overflow is the
//! snapshot with the journal played over it.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// The names of one directory as hark last knew them.
#[derive(Debug, Default)]
pub struct Names {
    /// Each name followed by a NUL, as the directory was last read.
    snapshot: Vec<u8>,
    entries: usize,
    /// `(created, name)` in the order inotify reported them, since the snapshot.
    journal: Vec<(bool, Box<[u8]>)>,
}

impl Names {
    /// The names found by reading the directory.
    pub fn read(names: &[OsString]) -> Names {
        let mut n = Names::default();
        n.reset(names);
        n
    }

    /// Starts over from what the directory holds now.
    pub fn reset(&mut self, names: &[OsString]) {
        self.snapshot.clear();
        for name in names {
            self.snapshot.extend_from_slice(name.as_bytes());
            self.snapshot.push(0);
        }
        self.snapshot.shrink_to_fit();
        self.entries = names.len();
        self.journal = Vec::new();
    }

    /// Notes a create (or move in) or a delete (or move out) inotify reported.
    pub fn note(&mut self, created: bool, name: &OsStr) {
        self.journal.push((created, name.as_bytes().into()));
        if self.journal.len() > 64 && self.journal.len() > self.entries {
            let known: Vec<OsString> = self.known().into_iter().collect();
            self.reset(&known);
        }
    }

    /// What the directory held as far as hark knows: the snapshot with the journal played
    /// over it.
    pub fn known(&self) -> HashSet<OsString> {
        let mut set: HashSet<OsString> = self
            .snapshot
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| OsStr::from_bytes(n).to_os_string())
            .collect();
        for (created, name) in &self.journal {
            let name = OsStr::from_bytes(name).to_os_string();
            if *created {
                set.insert(name);
            } else {
                set.remove(&name);
            }
        }
        set
    }
}

/// What changed in a directory between what hark knew and what it holds now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub created: Vec<OsString>,
    pub deleted: Vec<OsString>,
    /// Present before and now.
    pub kept: Vec<OsString>,
}

pub fn diff(known: HashSet<OsString>, now: &[OsString]) -> Diff {
    let mut d = Diff::default();
    let mut known = known;
    for name in now {
        if known.remove(name) {
            d.kept.push(name.clone());
        } else {
            d.created.push(name.clone());
        }
    }
    d.deleted = known.into_iter().collect();
    d.deleted.sort();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_journal_played_over_the_snapshot_is_what_was_known() {
        let mut n = Names::read(&os(&["a", "b", "c"]));
        n.note(true, OsStr::new("d"));
        n.note(false, OsStr::new("a"));
        n.note(true, OsStr::new("a"));
        n.note(false, OsStr::new("b"));
        let mut known: Vec<_> = n.known().into_iter().collect();
        known.sort();
        assert_eq!(known, os(&["a", "c", "d"]));
        let d = diff(n.known(), &os(&["a", "d", "e"]));
        assert_eq!(d.created, os(&["e"]));
        assert_eq!(d.deleted, os(&["c"]));
        assert_eq!(d.kept.len(), 2);
    }

    #[test]
    fn a_journal_longer_than_the_directory_is_folded_into_the_snapshot() {
        let mut n = Names::read(&os(&["a"]));
        for i in 0..100 {
            n.note(true, OsStr::new(&format!("f{i}")));
        }
        assert!(n.journal.len() < 100, "folded into the snapshot");
        assert_eq!(n.known().len(), 101);
    }
}
