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
//! redb also holds a lock on the file; hark locks the directory too, so two daemons cannot
//! share one `state_dir` even after the file was deleted. What someone else does to the
//! file while hark runs is noticed before the next write (see `file`).

mod file;
mod settle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use redb::{Database, Durability, ReadableTable, TableDefinition};

const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("rule_state");
/// Deliveries not yet confirmed, by sequence number (the order they were accepted in).
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Rules muted by `hark silence`, until when.
const SILENCES: TableDefinition<&str, &[u8]> = TableDefinition::new("silences");
/// Alerts posted to Alertmanager as firing and not yet resolved, re-posted while they
/// fire, by `action/rule/watch`.
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// Where streams (log files) were read to, by `watch/what`: written with the rule states
/// and deliveries their events led to.
const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions");

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
    /// Outbox updates (removals of delivered entries) a failed write could not store:
    /// each later write carries them, so a delivered entry never stays "pending" after a
    /// disk was full, nor is delivered again after a restart.
    unsettled: Mutex<BTreeMap<u64, Option<Vec<u8>>>>,
    /// The directory's lock and hark's own handle on the file; held across each write.
    guard: Mutex<file::Guard>,
    /// The file was damaged under hark and made anew: the daemon saves again what it holds.
    rebuilt: AtomicBool,
}

/// The key of one rule's state for one watch. Names cannot contain `/`.
pub fn key(rule: &str, watch: &str) -> String {
    format!("{rule}/{watch}")
}

/// redb's cache (read pages and the write buffer). Its default lets it grow to 1 GiB and
/// keep what it wrote; hark's tables are small and written a few pages at a time, and an
/// idle daemon should not hold a copy of them (docs/benchmarks.md, idle footprint).
const STORE_CACHE: usize = 256 * 1024;

fn open_db(path: &Path) -> Result<Database, StoreError> {
    redb::Builder::new()
        .set_cache_size(STORE_CACHE)
        .create(path)
        .map_err(|e| {
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
        let lock = file::lock_dir(dir).map_err(|e| StoreError {
            path: path.clone(),
            message: if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                "already in use by another process (is another hark running with this state_dir?)"
                    .to_string()
            } else {
                format!("cannot lock {}: {e}", dir.display())
            },
            io: false,
        })?;
        file::check_header(&path).map_err(|message| StoreError {
            path: path.clone(),
            message: format!(
                "{message}: move it aside to start with no saved state (rule states, outbox, \
                 silences), or put back a copy from a backup"
            ),
            io: false,
        })?;
        let db = open_db(&path)?;
        let mut guard = file::Guard::new(lock);
        guard.record(&path);
        Ok(Store {
            db: RwLock::new(Some(db)),
            path,
            unsettled: Mutex::default(),
            guard: Mutex::new(guard),
            rebuilt: AtomicBool::new(false),
        })
    }

    /// Whether the file was damaged under hark and made anew since the last call: what the
    /// daemon holds in memory must be saved again.
    pub fn take_rebuilt(&self) -> bool {
        self.rebuilt.swap(false, Ordering::AcqRel)
    }

    /// Runs a write on the database, after making sure the file is still the one hark
    /// wrote last; records what it is after.
    fn write<T>(&self, f: impl Fn(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        match guard.check(&self.path) {
            file::Found::Unchanged => {}
            file::Found::Gone => {
                // redb's handle goes first: it holds the old file's lock.
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
                match guard.restore(&self.path) {
                    Ok(aside) => tracing::warn!(
                        path = %self.path.display(),
                        set_aside = ?aside,
                        "the state store was deleted or replaced while hark ran; written again from hark's open copy, nothing lost"
                    ),
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), error = %e, "the state store was deleted or replaced while hark ran, and cannot be written again")
                    }
                }
            }
            file::Found::Damaged => {
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
                guard.release();
                let aside = file::set_aside(&self.path, "damaged");
                tracing::error!(
                    path = %self.path.display(),
                    set_aside = ?aside,
                    "the state store was truncated or written to by something other than hark; set aside, and made anew with the rule states and silences hark holds (pending deliveries are still made by this process, but would not survive a restart)"
                );
                self.rebuilt.store(true, Ordering::Release);
            }
        }
        let result = self.with_db(&f);
        guard.record(&self.path);
        result
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
    /// Updates not yet written (a full disk) count as made.
    pub fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut all = self.read_all(OUTBOX, |k| k)?;
        let pending = self.unsettled();
        if !pending.is_empty() {
            let pending: BTreeMap<u64, Option<Vec<u8>>> = pending.into_iter().collect();
            all.retain_mut(|(k, v)| match pending.get(k) {
                Some(Some(new)) => {
                    v.clone_from(new);
                    true
                }
                Some(None) => false,
                None => true,
            });
        }
        Ok(all)
    }

    /// One delivery of the outbox, if it is still there.
    pub fn outbox_entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(pending) = self
            .unsettled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seq)
        {
            return Ok(pending.clone());
        }
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| self.error(e))?;
            let table = match txn.open_table(OUTBOX) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(self.error(e)),
            };
            let value = table.get(seq).map_err(|e| self.error(e))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// Every firing Alertmanager alert.
    pub fn alerts(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_all(ALERTS, str::to_string)
    }

    /// Every stream position.
    pub fn positions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_all(POSITIONS, str::to_string)
    }

    /// Every silence.
    pub fn silences(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_all(SILENCES, str::to_string)
    }

    /// Sets (or with `None` removes) silences, on disk when it returns.
    pub fn set_silences(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        self.write(|db| {
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
        self.commit_with(rules, deliveries, alerts, &[])
    }

    /// `commit`, with stream positions (`None` removes) in the same transaction.
    pub fn commit_with(
        &self,
        rules: &[(String, Option<Vec<u8>>)],
        deliveries: &[(u64, Vec<u8>)],
        alerts: &[(String, Option<Vec<u8>>)],
        positions: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        let unsettled = self.unsettled();
        self.write(|db| {
            let mut txn = db.begin_write().map_err(|e| self.error(e))?;
            txn.set_durability(Durability::Immediate);
            self.apply(&txn, RULES, rules)?;
            self.apply(&txn, ALERTS, alerts)?;
            self.apply(&txn, POSITIONS, positions)?;
            {
                let mut outbox = txn.open_table(OUTBOX).map_err(|e| self.error(e))?;
                self.apply_outbox(&mut outbox, &unsettled)?;
                for (k, v) in deliveries {
                    outbox.insert(*k, v.as_slice()).map_err(|e| self.error(e))?;
                }
            }
            txn.commit().map_err(|e| self.error(e))
        })?;
        self.settled(&unsettled);
        Ok(())
    }

    fn apply_outbox(
        &self,
        outbox: &mut redb::Table<u64, &[u8]>,
        changes: &[(u64, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
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
        Ok(())
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
}

#[cfg(test)]
mod tests;
