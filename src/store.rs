//! What survives a restart, in `state_dir/state.redb`: rule states and the action
//! outbox. The store keeps bytes; rules and actions own their formats.
//!
//! Why redb rather than an append-only file: what is kept is a small map (one entry per
//! firing rule and watch) that changes in place, and the action outbox that comes next
//! needs the same with deletes. An append-only log would need its own compaction, its own
//! handling of a torn last record, and a rewrite protocol that is itself crash-safe; redb
//! gives atomic, checksummed commits (a copy-on-write B-tree with two commit slots) that
//! are fsync'd before `commit` returns, in pure Rust with no C dependency. A commit that
//! is interrupted leaves the previous state; there is no half-written entry to misread.
//! redb also holds a lock on the file, so two daemons cannot share one `state_dir`.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use redb::{Database, Durability, ReadableTable, TableDefinition};

const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("rule_state");
/// Deliveries not yet confirmed, by sequence number (the order they were accepted in).
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Rules muted by `hark silence`, until when.
const SILENCES: TableDefinition<&str, &[u8]> = TableDefinition::new("silences");
/// Alerts posted to Alertmanager as firing and not yet resolved, re-posted while they
/// fire, by `action/rule/watch`.
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");

#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
    /// An I/O error (a full or failing disk): redb refuses every later transaction of
    /// the handle that saw it, so the file must be opened again.
    io: bool,
}

/// The store. After an I/O error it opens its file again, so a disk that was full and has
/// room again is written to again without a restart.
pub struct Store {
    db: RwLock<Option<Database>>,
    path: PathBuf,
}

/// The key of one rule's state for one watch. Names cannot contain `/`.
pub fn key(rule: &str, watch: &str) -> String {
    format!("{rule}/{watch}")
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::create(path).map_err(|e| {
        let io = matches!(e, redb::DatabaseError::Storage(_));
        let message = match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                "already in use by another process (is another hark running with this state_dir?)"
                    .to_string()
            }
            e => e.to_string(),
        };
        StoreError {
            path: path.to_path_buf(),
            message,
            io,
        }
    })
}

impl Store {
    /// Opens (or creates) the store in `dir`, creating `dir` readable by its owner only.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("state.redb");
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError {
                    path: path.clone(),
                    message: format!("cannot create {}: {e}", dir.display()),
                    io: false,
                })?;
        }
        let db = open_db(&path)?;
        Ok(Store {
            db: RwLock::new(Some(db)),
            path,
        })
    }

    fn error(&self, e: impl Into<redb::Error>) -> StoreError {
        let e = e.into();
        StoreError {
            path: self.path.clone(),
            io: matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo),
            message: e.to_string(),
        }
    }

    /// Runs `f` on the database; after an I/O error (now or before), opens the file again
    /// and runs `f` once more. What that returns is the result, an error included.
    fn with_db<T>(&self, f: impl Fn(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let first = match &*self.db.read().unwrap_or_else(|p| p.into_inner()) {
            Some(db) => f(db),
            None => Err(StoreError {
                path: self.path.clone(),
                message: "not open after an earlier I/O error".into(),
                io: true,
            }),
        };
        match first {
            Err(e) if e.io => {}
            other => return other,
        }
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        // The old handle holds the file's lock: it goes first.
        *slot = None;
        let db = open_db(&self.path)?;
        let result = f(&db);
        *slot = Some(db);
        if result.is_ok() {
            tracing::info!(path = %self.path.display(), "the state store is written to again");
        }
        result
    }

    /// Every saved rule state.
    pub fn rule_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_all(RULES, str::to_string)
    }

    /// Every delivery in the outbox, in the order they were accepted.
    pub fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.read_all(OUTBOX, |k| k)
    }

    /// Every firing Alertmanager alert.
    pub fn alerts(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_all(ALERTS, str::to_string)
    }

    /// Every silence.
    pub fn silences(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_all(SILENCES, str::to_string)
    }

    /// Sets (or with `None` removes) silences, on disk when it returns.
    pub fn set_silences(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let mut txn = db.begin_write().map_err(|e| self.error(e))?;
            txn.set_durability(Durability::Immediate);
            self.apply(&txn, SILENCES, changes)?;
            txn.commit().map_err(|e| self.error(e))
        })
    }

    /// Every entry of a table, in key order (none when the table was never written).
    fn read_all<K: redb::Key + 'static, T>(
        &self,
        def: TableDefinition<K, &'static [u8]>,
        key: impl for<'a> Fn(K::SelfType<'a>) -> T,
    ) -> Result<Vec<(T, Vec<u8>)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.error(e))?;
            let table = match txn.open_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(self.error(e)),
            };
            let mut out = Vec::new();
            for entry in table.iter().map_err(|e| self.error(e))? {
                let (k, v) = entry.map_err(|e| self.error(e))?;
                out.push((key(k.value()), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Writes rule state changes and firing-alert changes (`None` removes) and new
    /// deliveries in one transaction, on disk (fsync'd) when it returns.
    pub fn commit(
        &self,
        rules: &[(String, Option<Vec<u8>>)],
        deliveries: &[(u64, Vec<u8>)],
        alerts: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            let mut txn = db.begin_write().map_err(|e| self.error(e))?;
            txn.set_durability(Durability::Immediate);
            self.apply(&txn, RULES, rules)?;
            self.apply(&txn, ALERTS, alerts)?;
            {
                let mut outbox = txn.open_table(OUTBOX).map_err(|e| self.error(e))?;
                for (k, v) in deliveries {
                    outbox.insert(*k, v.as_slice()).map_err(|e| self.error(e))?;
                }
            }
            txn.commit().map_err(|e| self.error(e))
        })
    }

    /// Inserts or (for `None`) removes entries of a table keyed by name.
    fn apply(
        &self,
        txn: &redb::WriteTransaction,
        def: TableDefinition<&str, &[u8]>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut table = txn.open_table(def).map_err(|e| self.error(e))?;
        for (k, v) in changes {
            match v {
                Some(bytes) => {
                    table
                        .insert(k.as_str(), bytes.as_slice())
                        .map_err(|e| self.error(e))?;
                }
                None => {
                    table.remove(k.as_str()).map_err(|e| self.error(e))?;
                }
            }
        }
        Ok(())
    }

    /// Updates deliveries in place (`None` removes one: it was delivered). Not fsync'd on
    /// its own: a removal lost in a crash means one more delivery, which the receiver can
    /// recognise by its idempotency key; the next `commit` makes it durable.
    pub fn settle(&self, changes: &[(u64, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let mut txn = db.begin_write().map_err(|e| self.error(e))?;
            txn.set_durability(Durability::Eventual);
            {
                let mut outbox = txn.open_table(OUTBOX).map_err(|e| self.error(e))?;
                for (k, v) in changes {
                    match v {
                        Some(bytes) => {
                            outbox
                                .insert(*k, bytes.as_slice())
                                .map_err(|e| self.error(e))?;
                        }
                        None => {
                            outbox.remove(*k).map_err(|e| self.error(e))?;
                        }
                    }
                }
            }
            txn.commit().map_err(|e| self.error(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_saved_is_loaded_by_the_next_process_and_removals_stick() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&dir.path().join("state")).unwrap();
            store
                .commit(
                    &[
                        (key("a", "w"), Some(b"A".to_vec())),
                        (key("b", "w"), Some(b"B".to_vec())),
                    ],
                    &[(1, b"one".to_vec()), (2, b"two".to_vec())],
                    &[("am/a/w".into(), Some(b"alert".to_vec()))],
                )
                .unwrap();
            store.commit(&[(key("b", "w"), None)], &[], &[]).unwrap();
            store
                .settle(&[(1, None), (2, Some(b"TWO".to_vec()))])
                .unwrap();
        }
        let store = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(
            store.rule_states().unwrap(),
            vec![(key("a", "w"), b"A".to_vec())]
        );
        assert_eq!(store.outbox().unwrap(), vec![(2, b"TWO".to_vec())]);
        assert_eq!(
            store.alerts().unwrap(),
            vec![("am/a/w".to_string(), b"alert".to_vec())]
        );
    }

    #[test]
    fn a_second_daemon_on_the_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let Err(e) = Store::open(dir.path()) else {
            panic!("opened twice");
        };
        assert!(e.to_string().contains("another hark"), "{e}");
    }
}
