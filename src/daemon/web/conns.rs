//! The listener's connections, at most `MAX_CONNECTIONS`: one more closes an idle one
//! (not answering a request now): first one that never sent a request, the oldest such,
//! else the one whose last answer is oldest (not one still writing its last answer out,
//! if any other is idle). A flood of idle connections cannot keep a scrape or a push out.
//! When every one is busy, the new one is closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

pub const MAX_CONNECTIONS: usize = 256;

/// Each open connection by number (the oldest first): its activity, what ends it.
type Open = BTreeMap<u64, (Arc<Activity>, CancellationToken)>;

pub struct Conns {
    open: Mutex<(u64, Open)>,
    epoch: Instant,
}

impl Default for Conns {
    fn default() -> Conns {
        Conns {
            open: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

/// Whether a request is being answered, and when the last one was (milliseconds from
/// the listener's start, plus one; 0: never).
#[derive(Default)]
pub struct Activity {
    busy: AtomicBool,
    last: AtomicU64,
}

/// One open connection: its activity, and what closes it.
pub struct Conn {
    id: u64,
    pub activity: Arc<Activity>,
    pub ended: CancellationToken,
    conns: Arc<Conns>,
}

impl Conn {
    /// A request is being answered.
    pub fn begin(&self) {
        self.activity.busy.store(true, Ordering::Relaxed);
    }

    /// Its answer is made (hyper writes it out next).
    pub fn end(&self) {
        let ms = self.conns.epoch.elapsed().as_millis() as u64 + 1;
        self.activity.last.store(ms, Ordering::Relaxed);
        self.activity.busy.store(false, Ordering::Relaxed);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut open = self.conns.open.lock().unwrap_or_else(|p| p.into_inner());
        open.1.remove(&self.id);
    }
}

impl Conns {
    /// A place for a new connection; none when every one open is busy.
    pub fn open(self: &Arc<Self>) -> Option<Conn> {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (next, open) = &mut *guard;
        if open.len() >= MAX_CONNECTIONS {
            let idle = open
                .iter()
                .filter(|(_, (a, _))| !a.busy.load(Ordering::Relaxed))
                .min_by_key(|(id, (a, _))| (a.last.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id);
            match idle {
                Some(id) => {
                    if let Some((_, ended)) = open.remove(&id) {
                        ended.cancel();
                    }
                    super::refused("evicted");
                }
                None => {
                    super::refused("busy");
                    tracing::warn!("http: {MAX_CONNECTIONS} connections busy; closing a new one");
                    return None;
                }
            }
        }
        let id = *next;
        *next += 1;
        let activity = Arc::new(Activity::default());
        let ended = CancellationToken::new();
        open.insert(id, (Arc::clone(&activity), ended.clone()));
        Some(Conn {
            id,
            activity,
            ended,
            conns: Arc::clone(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_more_than_the_bound_closes_an_idle_one_never_used_first_not_the_newest() {
        let conns = Arc::new(Conns::default());
        let held: Vec<Conn> = (0..MAX_CONNECTIONS).filter_map(|_| conns.open()).collect();
        assert_eq!(held.len(), MAX_CONNECTIONS);
        held[0].begin();
        // Answered a request: kept while one that never sent any is there.
        held[1].begin();
        held[1].end();
        let newest = conns.open();
        assert!(newest.is_some());
        assert!(!held[0].ended.is_cancelled(), "a busy one stays");
        assert!(!held[1].ended.is_cancelled(), "one that was answered stays");
        assert!(held[2].ended.is_cancelled(), "the oldest never used goes");
        for c in held.iter().skip(3) {
            c.begin();
        }
        if let Some(n) = &newest {
            n.begin();
        }
        // Only the answered one is idle now: it goes.
        let second = conns.open();
        assert!(held[1].ended.is_cancelled());
        if let Some(s) = &second {
            s.begin();
        }
        assert!(
            conns.open().is_none(),
            "every one busy: the new one is refused"
        );
    }
}
