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

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// The names of one directory as hark last knew them.
#[derive(Debug, Default)]
pub struct Names {
    /// Each name followed by a NUL, as the directory was last read.
    snapshot: Vec<u8>,
    entries: usize,
    /// The names of the journal, back to back: recording an event allocates nothing of
    /// its own.
    journal_names: Vec<u8>,
    /// `(created, start, end)` in `journal_names`, in the order inotify reported them.
    journal: Vec<(bool, u32, u32)>,
}

impl Names {
    /// The names found by reading the directory.
    pub fn read(names: &[OsString]) -> Names {
        let mut n = Names::default();
        n.reset(names.iter().map(|n| n.as_bytes()));
        n
    }

    /// Starts over from these names.
    pub fn reset<'a>(&mut self, names: impl Iterator<Item = &'a [u8]>) {
        let mut snapshot = Vec::new();
        let mut entries = 0;
        for name in names {
            snapshot.extend_from_slice(name);
            snapshot.push(0);
            entries += 1;
        }
        snapshot.shrink_to_fit();
        self.snapshot = snapshot;
        self.entries = entries;
        self.journal = Vec::new();
        self.journal_names = Vec::new();
    }

    /// Notes a create (or move in) or a delete (or move out) inotify reported.
    pub fn note(&mut self, created: bool, name: &OsStr) {
        let start = self.journal_names.len();
        self.journal_names.extend_from_slice(name.as_bytes());
        let (Ok(start), Ok(end)) = (
            u32::try_from(start),
            u32::try_from(self.journal_names.len()),
        ) else {
            self.fold();
            return self.note(created, name);
        };
        self.journal.push((created, start, end));
        if self.journal.len() > 64 && self.journal.len() > self.entries {
            self.fold();
        }
    }

    /// The journal played into a new snapshot: no allocation per name.
    fn fold(&mut self) {
        let mut last: HashMap<&[u8], bool> = HashMap::with_capacity(self.journal.len());
        for (created, a, b) in &self.journal {
            last.insert(&self.journal_names[*a as usize..*b as usize], *created);
        }
        let old: HashSet<&[u8]> = self.snapshot_names().collect();
        let kept = self
            .snapshot_names()
            .filter(|n| last.get(n) != Some(&false));
        let added = self
            .journal
            .iter()
            .map(|(_, a, b)| &self.journal_names[*a as usize..*b as usize])
            .filter(|n| last.get(n) == Some(&true) && !old.contains(n));
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let names: Vec<&[u8]> = kept.chain(added).filter(|n| seen.insert(n)).collect();
        let mut snapshot = Vec::new();
        for n in &names {
            snapshot.extend_from_slice(n);
            snapshot.push(0);
        }
        let entries = names.len();
        drop(names);
        drop(seen);
        drop(old);
        drop(last);
        snapshot.shrink_to_fit();
        self.snapshot = snapshot;
        self.entries = entries;
        self.journal = Vec::new();
        self.journal_names = Vec::new();
    }

    fn snapshot_names(&self) -> impl Iterator<Item = &[u8]> {
        self.snapshot.split(|b| *b == 0).filter(|n| !n.is_empty())
    }

    /// What the directory held as far as hark knows: the snapshot with the journal played
    /// over it.
    pub fn known(&self) -> HashSet<OsString> {
        let mut set: HashSet<OsString> = self
            .snapshot_names()
            .map(|n| OsStr::from_bytes(n).to_os_string())
            .collect();
        for (created, a, b) in &self.journal {
            let name =
                OsStr::from_bytes(&self.journal_names[*a as usize..*b as usize]).to_os_string();
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
