//! At start, the outbox takes up what a previous run left in the store: deliveries not
//! made yet (resumed in order), failed ones (kept, visible, not retried), and the firing
//! alerts it re-posts to Alertmanager.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Delivery, Outbox};
use crate::store::{Store, StoreError};

/// Runs a store operation off the runtime.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let store = Arc::clone(store);
    Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
}

impl Outbox {
    /// Takes up the stored deliveries and the firing alerts of rules still firing
    /// (`firing` holds their `rule/watch` keys), then starts re-posting alerts. Returns
    /// the sequence number of the next delivery.
    pub async fn take_up(&self, firing: &HashSet<String>) -> anyhow::Result<u64> {
        let store = &self.shared.store;
        let pending = blocking(store, |s| s.outbox()).await?;
        let alerts = blocking(store, |s| s.alerts()).await?;
        let stale = self.restore_alerts(alerts, firing);
        if !stale.is_empty() {
            tracing::info!(
                count = stale.len(),
                "no longer posting alerts whose rule stopped firing or whose action changed while hark was stopped; Alertmanager resolves them at their endsAt"
            );
            let removals: Vec<_> = stale.into_iter().map(|k| (k, None)).collect();
            blocking(store, move |s| s.commit(&[], &[], &removals)).await?;
        }
        let next = self.resume(pending);
        self.start_resending();
        Ok(next)
    }

    /// Hands the deliveries a previous run left to their lanes; returns the next sequence
    /// number. Failed deliveries stay where they are, visible, and are not retried.
    fn resume(&self, pending: Vec<(u64, Vec<u8>)>) -> u64 {
        let next = pending.iter().map(|(k, _)| k + 1).max().unwrap_or(1);
        let (mut resumed, mut failed) = (0, 0);
        for (seq, bytes) in pending {
            match serde_json::from_slice::<Delivery>(&bytes) {
                Ok(d) if d.failed.is_some() => failed += 1,
                Ok(d) => {
                    resumed += 1;
                    self.enqueue(seq, d, true);
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "an outbox entry does not decode; left in place")
                }
            }
        }
        if resumed > 0 {
            tracing::info!(
                count = resumed,
                "resuming deliveries from before the restart"
            );
        }
        if failed > 0 {
            tracing::warn!(
                count = failed,
                "failed deliveries are kept in the outbox (see `hark status`)"
            );
        }
        next
    }
}
