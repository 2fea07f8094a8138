//! The listener's connections, at most `MAX_CONNECTIONS`: one more closes the oldest
//! connection that is idle (between requests, or that never sent one), so a flood of
//! idle connections cannot keep a scrape or a push out. When every one is busy, the new
//! one is closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub const MAX_CONNECTIONS: usize = 256;

/// Each open connection by number (the oldest first): whether it is busy, what ends it.
type Open = BTreeMap<u64, (Arc<AtomicBool>, CancellationToken)>;

#[derive(Default)]
pub struct Conns {
    open: Mutex<(u64, Open)>,
}

/// One open connection: whether a request is being answered, and what closes it.
pub struct Conn {
    id: u64,
    pub busy: Arc<AtomicBool>,
    pub ended: CancellationToken,
    conns: Arc<Conns>,
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
                .find(|(_, (busy, _))| !busy.load(Ordering::Relaxed))
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
        let busy = Arc::new(AtomicBool::new(false));
        let ended = CancellationToken::new();
        open.insert(id, (Arc::clone(&busy), ended.clone()));
        Some(Conn {
            id,
            busy,
            ended,
            conns: Arc::clone(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_more_than_the_bound_closes_the_oldest_idle_not_the_newest() {
        let conns = Arc::new(Conns::default());
        let held: Vec<Conn> = (0..MAX_CONNECTIONS).filter_map(|_| conns.open()).collect();
        assert_eq!(held.len(), MAX_CONNECTIONS);
        held[0].busy.store(true, Ordering::Relaxed);
        let newest = conns.open();
        assert!(newest.is_some());
        assert!(!held[0].ended.is_cancelled(), "a busy one stays");
        assert!(held[1].ended.is_cancelled(), "the oldest idle one goes");
        for c in &held {
            c.busy.store(true, Ordering::Relaxed);
        }
        if let Some(n) = &newest {
            n.busy.store(true, Ordering::Relaxed);
        }
        // Everything busy (the evicted one's place is taken by the newest): refused.
        assert!(conns.open().is_none());
    }
}
