//! Keys by when they were last seen, for bounding a rule's groups (`max_groups`): the
//! least recently seen goes first, and status shows the most recent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Default)]
pub struct Lru {
    order: BTreeMap<u64, Arc<str>>,
    at: HashMap<Arc<str>, u64>,
    next: u64,
}

impl Lru {
    /// `key` is the most recently seen now (added if new).
    pub fn touch(&mut self, key: &Arc<str>) {
        let n = self.next;
        self.next += 1;
        if let Some(old) = self.at.insert(Arc::clone(key), n) {
            self.order.remove(&old);
        }
        self.order.insert(n, Arc::clone(key));
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(n) = self.at.remove(key) {
            self.order.remove(&n);
        }
    }

    /// Takes out the least recently seen key.
    pub fn pop_oldest(&mut self) -> Option<Arc<str>> {
        let (_, key) = self.order.pop_first()?;
        self.at.remove(&key);
        Some(key)
    }

    /// The most recently seen keys, newest first.
    pub fn newest(&self, n: usize) -> impl Iterator<Item = &Arc<str>> {
        self.order.values().rev().take(n)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }
}

/// A rule's groups by when they were last seen: all of them (status shows the most
/// recent) and those that may be dropped for room, the ones not firing. A firing group is
/// never dropped: it ends by itself (a resolve), and then may be.
#[derive(Default)]
pub struct Recency {
    pub seen: Lru,
    idle: Lru,
}

impl Recency {
    /// A group seen now, firing or not.
    pub fn saw(&mut self, key: &Arc<str>, firing: bool) {
        self.seen.touch(key);
        self.firing(key, firing);
    }

    /// A group's firing began or ended.
    pub fn firing(&mut self, key: &Arc<str>, firing: bool) {
        if firing {
            self.idle.remove(key);
        } else {
            self.idle.touch(key);
        }
    }

    /// The keys to drop so that one more group fits among `held`, at most `max`; `None`
    /// when there is no room (every group is firing).
    pub fn make_room(&mut self, held: usize, max: usize) -> Option<Vec<Arc<str>>> {
        let mut out = Vec::new();
        while held - out.len() >= max {
            let key = self.idle.pop_oldest()?;
            self.seen.remove(&key);
            out.push(key);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_seen_goes_first_and_a_touch_makes_a_key_new_again() {
        let mut l = Lru::default();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        l.touch(&a);
        l.touch(&b);
        l.touch(&c);
        l.touch(&a);
        assert_eq!(l.len(), 3);
        let newest: Vec<&str> = l.newest(2).map(|k| &**k).collect();
        assert_eq!(newest, ["a", "c"]);
        l.remove("c");
        assert_eq!(l.pop_oldest().as_deref(), Some("b"));
        assert_eq!(l.pop_oldest().as_deref(), Some("a"));
        assert_eq!(l.pop_oldest(), None);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn room_is_made_by_dropping_groups_not_firing_least_recently_seen_first() {
        let mut r = Recency::default();
        let keys: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
        r.saw(&keys[0], true);
        r.saw(&keys[1], false);
        r.saw(&keys[2], false);
        assert_eq!(r.make_room(3, 10), Some(vec![]));
        let dropped = r.make_room(3, 2).unwrap();
        assert_eq!(dropped.iter().map(|k| &**k).collect::<Vec<_>>(), ["b", "c"]);
        // Only `a` is left, and it is firing: no room.
        assert_eq!(r.make_room(1, 1), None);
        r.firing(&keys[0], false);
        assert_eq!(r.make_room(1, 1).unwrap().len(), 1);
        assert_eq!(r.seen.len(), 0);
    }
}
