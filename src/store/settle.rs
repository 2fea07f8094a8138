//! What became of deliveries, written apart from the transactions of firings: not
//! fsync'd on its own, and carried by the next write when a write fails (a full disk).

use redb::Durability;

use super::{Store, StoreError, OUTBOX};

impl Store {
    pub(super) fn unsettled(&self) -> Vec<(u64, Option<Vec<u8>>)> {
        let pending = self.unsettled.lock().unwrap_or_else(|p| p.into_inner());
        pending.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Forgets the carried updates a write just stored (unless a newer one came since).
    pub(super) fn settled(&self, written: &[(u64, Option<Vec<u8>>)]) {
        let mut pending = self.unsettled.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in written {
            if pending.get(k) == Some(v) {
                pending.remove(k);
            }
        }
    }

    /// Outbox updates the last writes could not store.
    pub fn unsettled_count(&self) -> usize {
        self.unsettled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Updates deliveries in place (`None` removes one: it was delivered). Not fsync'd on
    /// its own: a removal lost in a crash means one more delivery, which the receiver can
    /// recognise by its idempotency key; the next `commit` makes it durable. What a failed
    /// write could not store is carried by the next write, of either kind (`settle(&[])`
    /// writes just that).
    pub fn settle(&self, changes: &[(u64, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let all = {
            let mut pending = self.unsettled.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in changes {
                pending.insert(*k, v.clone());
            }
            pending
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect::<Vec<_>>()
        };
        if all.is_empty() {
            return Ok(());
        }
        self.write(|db| {
            let mut txn = db.begin_write().map_err(|e| self.error(e))?;
            txn.set_durability(Durability::Eventual);
            {
                let mut outbox = txn.open_table(OUTBOX).map_err(|e| self.error(e))?;
                self.apply_outbox(&mut outbox, &all)?;
            }
            txn.commit().map_err(|e| self.error(e))
        })?;
        self.settled(&all);
        Ok(())
    }
}
