//! Rule state on disk, in `state_dir/state.redb`.
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

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::state::Saved;

const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("rule_state");

#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

/// The key of one rule's state for one watch. Names cannot contain `/`.
pub fn key(rule: &str, watch: &str) -> String {
    format!("{rule}/{watch}")
}

impl Store {
    /// Opens (or creates) the store in `dir`, creating `dir` readable by its owner only.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("state.redb");
        let err = |message: String| StoreError {
            path: path.clone(),
            message,
        };
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => err(
                "already in use by another process (is another hark running with this state_dir?)"
                    .into(),
            ),
            e => err(e.to_string()),
        })?;
        Ok(Store { db, path })
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Every saved state. An entry that does not decode is skipped and named.
    pub fn load(&self) -> Result<Vec<(String, Saved)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match txn.open_table(RULES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (k, v) = entry.map_err(|e| self.error(e))?;
            match serde_json::from_slice::<Saved>(v.value()) {
                Ok(saved) => out.push((k.value().to_string(), saved)),
                Err(e) => {
                    tracing::warn!(key = k.value(), error = %e, "ignoring a rule state that does not decode")
                }
            }
        }
        Ok(out)
    }

    /// Writes every change in one durable transaction: `None` removes the entry.
    pub fn save(&self, changes: &[(String, Option<Saved>)]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(RULES).map_err(|e| self.error(e))?;
            for (k, v) in changes {
                match v {
                    Some(saved) => {
                        let bytes = serde_json::to_vec(saved).map_err(|e| self.error(e))?;
                        table
                            .insert(k.as_str(), bytes.as_slice())
                            .map_err(|e| self.error(e))?;
                    }
                    None => {
                        table.remove(k.as_str()).map_err(|e| self.error(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::state::SavedFiring;
    use std::time::{Duration, SystemTime};

    #[test]
    fn what_is_saved_is_loaded_by_the_next_process_and_removals_stick() {
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let saved = Saved {
            firing: Some(SavedFiring {
                since: t,
                last_sent: t,
                count: 3,
            }),
            last_fired: Some(t),
        };
        {
            let store = Store::open(&dir.path().join("state")).unwrap();
            store
                .save(&[
                    (key("a", "w"), Some(saved.clone())),
                    (key("b", "w"), Some(saved.clone())),
                ])
                .unwrap();
            store.save(&[(key("b", "w"), None)]).unwrap();
        }
        let store = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(store.load().unwrap(), vec![(key("a", "w"), saved)]);
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
