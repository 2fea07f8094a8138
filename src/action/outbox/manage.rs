//! `hark outbox`: what the outbox holds, a failed delivery tried again, a delivery
//! dropped. A delivery dropped while its lane holds it is not attempted again.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{lock, settle, Delivery, Outbox, Retrying};

/// One delivery in the outbox, as `hark outbox` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Its sequence number: what `retry` and `drop` take.
    pub id: u64,
    pub rule: String,
    pub action: String,
    /// Of the firing: `firing` or `resolved`.
    pub state: String,
    /// RFC 3339.
    pub accepted: String,
    pub attempts: u32,
    /// Why it was given up; `None` while it is pending.
    pub failed: Option<String>,
    /// While it is tried again: why the last attempt failed, and when the next is due
    /// (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// Which receiver of the action (an Alertmanager cluster's member).
    pub target: u32,
    /// A broker message's routing key, topic or subject.
    pub route: Option<String>,
    /// An email's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Entry {
    fn of(id: u64, d: &Delivery) -> Entry {
        Entry::live(id, d, None)
    }

    /// With what the lane knows of it while it is tried again.
    pub(crate) fn live(id: u64, d: &Delivery, retrying: Option<&Retrying>) -> Entry {
        let retrying = retrying.filter(|_| d.failed.is_none());
        Entry {
            id,
            rule: d.rule.clone(),
            action: d.action.clone(),
            state: d.state.clone(),
            accepted: crate::event::rfc3339(d.accepted),
            attempts: retrying.map_or(d.attempts, |r| r.attempts.max(d.attempts)),
            failed: d.failed.clone(),
            last_error: retrying.map(|r| r.error.clone()),
            next_attempt: retrying.map(|r| crate::event::rfc3339(r.next)),
            target: d.target,
            route: d.route.clone(),
            subject: d.subject.clone(),
        }
    }
}

impl Outbox {
    async fn entries(&self) -> Result<Vec<(u64, Delivery)>, String> {
        let store = Arc::clone(&self.shared.store);
        let rows = tokio::task::spawn_blocking(move || store.outbox())
            .await
            .map_err(|e| format!("reading the outbox panicked: {e}"))?
            .map_err(|e| format!("cannot read the outbox: {e}"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, bytes)| Some((id, serde_json::from_slice(&bytes).ok()?)))
            .collect())
    }

    /// Every delivery in the outbox, oldest first; those being tried again with their
    /// attempts, last error and next try as they are now.
    pub async fn list(&self) -> Result<Vec<Entry>, String> {
        let retrying = self.retrying();
        Ok(self
            .entries()
            .await?
            .iter()
            .map(|(id, d)| Entry::live(*id, d, retrying.get(id)))
            .collect())
    }

    /// Counts what waits and what failed into the outbox's metrics (read when metrics are
    /// asked for: the store is the truth).
    pub async fn report_metrics(&self) {
        let Ok(rows) = self.entries().await else {
            return;
        };
        let (mut pending, mut failed) = (0i64, 0i64);
        let mut oldest: Option<std::time::SystemTime> = None;
        for (_, d) in &rows {
            if d.failed.is_some() {
                failed += 1;
            } else {
                pending += 1;
                oldest = Some(oldest.map_or(d.accepted, |o| o.min(d.accepted)));
            }
        }
        let age = oldest
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        crate::metrics::get().set_outbox(pending, failed, age);
    }

    /// The deliveries being tried again now, by id.
    pub fn retrying(&self) -> std::collections::HashMap<u64, Retrying> {
        lock(&self.shared.retrying).clone()
    }

    /// One delivery, read from the store.
    async fn entry(&self, id: u64) -> Result<Delivery, String> {
        let store = Arc::clone(&self.shared.store);
        let bytes = tokio::task::spawn_blocking(move || store.outbox_entry(id))
            .await
            .map_err(|e| format!("reading the outbox panicked: {e}"))?
            .map_err(|e| format!("cannot read the outbox: {e}"))?
            .ok_or_else(|| format!("no delivery {id} in the outbox"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("delivery {id} does not decode: {e}"))
    }

    /// Tries a failed delivery again (`id`), or every failed one (`None`), from its first
    /// attempt, with the same idempotency key; returns the ones queued.
    pub async fn retry(&self, id: Option<u64>) -> Result<Vec<Entry>, String> {
        let chosen = match id {
            Some(id) => {
                let d = self.entry(id).await?;
                if d.failed.is_none() {
                    return Err(format!(
                        "delivery {id} has not failed: it is pending, and tried again by itself"
                    ));
                }
                vec![(id, d)]
            }
            None => self.entries().await?,
        };
        let mut queued = Vec::new();
        for (seq, mut d) in chosen.into_iter().filter(|(_, d)| d.failed.is_some()) {
            d.failed = None;
            d.attempts = 0;
            settle(&self.shared, vec![(seq, Some(d.to_bytes()))]).await;
            queued.push(Entry::of(seq, &d));
            self.enqueue(seq, d, true);
        }
        Ok(queued)
    }

    /// Drops a delivery, failed or pending: it is not attempted again.
    pub async fn drop_delivery(&self, id: u64) -> Result<Entry, String> {
        let d = self.entry(id).await?;
        if d.failed.is_none() {
            lock(&self.shared.dropped).insert(id);
        }
        self.shared.retry_done(id);
        settle(&self.shared, vec![(id, None)]).await;
        Ok(Entry::of(id, &d))
    }
}
