//! What the engine decided, made to last and set going: rule states, firing alerts,
//! deliveries and stream positions stored in one transaction before any action starts.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sd_notify::NotifyState;

use super::{blocking, notify, Daemon};
use crate::action::outbox::{self, Delivery, Outbox};
use crate::action::{Dispatcher, ShellJob, Slots};
use crate::config::Config;
use crate::event::{Firing, FiringState};

/// What runs a firing's actions: the dispatcher of the running configuration (and those
/// of earlier ones whose actions still run), the shell actions' slots, and the outbox.
pub(super) struct Actions {
    pub dispatcher: Dispatcher,
    /// The shell actions' slots, kept across reloads.
    pub slots: Slots,
    /// Dispatchers of earlier configurations, whose actions may still run.
    pub retired: Vec<Dispatcher>,
    pub outbox: Outbox,
    /// The sequence number of the next delivery.
    pub next_seq: u64,
}

impl Actions {
    /// The actions of `config`, with an outbox that took up what an earlier run left
    /// (`firing`: the store keys of the rule states firing now, whose alerts it re-posts).
    pub async fn start(
        config: &Config,
        store: &Arc<crate::store::Store>,
        firing: &std::collections::HashSet<String>,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Actions> {
        let slots = Slots::new(config.daemon.max_concurrent_actions);
        let dispatcher = Dispatcher::new(config, &slots);
        let outbox = Outbox::new(dispatcher.actions(), Arc::clone(store), stop);
        let next_seq = outbox.take_up(firing).await?;
        Ok(Actions {
            dispatcher,
            slots,
            retired: Vec::new(),
            outbox,
            next_seq,
        })
    }

    /// A reload: new firings use the new actions; the old dispatcher's running actions
    /// finish. Returns the keys of stored alerts whose action went away, for removal.
    pub fn reconfigure(&mut self, new: &Config) -> Vec<String> {
        self.slots.resize(new.daemon.max_concurrent_actions);
        let old = std::mem::replace(&mut self.dispatcher, Dispatcher::new(new, &self.slots));
        self.retired.retain(|d| !d.is_idle());
        self.retired.push(old);
        self.outbox.reconfigure(self.dispatcher.actions())
    }

    /// At a stop: running actions and deliveries in flight get `grace`, together.
    pub async fn shutdown(self, grace: Duration) {
        let mut dispatchers = tokio::task::JoinSet::new();
        for x in std::iter::once(self.dispatcher).chain(self.retired) {
            dispatchers.spawn(x.shutdown(grace));
        }
        tokio::join!(dispatchers.join_all(), self.outbox.drain(grace));
    }
}

impl Daemon {
    /// Stores what the engine decided and starts its actions: a state change and its
    /// deliveries are on disk, in one transaction, before any action starts, so a restart
    /// never fires a rule twice for one outage, and loses no delivery.
    pub(super) async fn act(&mut self, firings: Vec<Firing>) {
        self.wait_for_slots().await;
        let fired = !firings.is_empty();
        let (jobs, deliveries) = self.prepare(firings);
        let mut changes = std::mem::take(&mut self.unsaved.rules);
        changes.extend(self.engine.take_changes(Instant::now(), SystemTime::now()));
        let mut alerts = std::mem::take(&mut self.unsaved.alerts);
        alerts.extend(outbox::alert_changes(&deliveries));
        // Positions of lines and entries that led to nothing else wait a little, to be
        // stored with later ones in one write (a SIGKILL meanwhile makes hark read them
        // again, and judge them as it would have: nothing they led to was kept).
        let nothing_else = !fired
            && changes.is_empty()
            && deliveries.is_empty()
            && alerts.is_empty()
            && jobs.is_empty();
        if nothing_else
            && self
                .unsaved
                .positions_since
                .is_some_and(|t| t.elapsed() < POSITION_DELAY)
        {
            return;
        }
        let states_changed = !changes.is_empty();
        let stored = self.store_batch(changes, &deliveries, alerts).await;
        if fired {
            self.export_firing();
        }
        if states_changed {
            self.export_deadlines();
        }
        self.save_again_if_rebuilt().await;
        self.actions.dispatcher.start(jobs);
        for (seq, d) in deliveries {
            self.actions.outbox.enqueue(seq, d, stored);
        }
    }

    /// While `MAX_WAITING` shell actions wait for a slot, the engine takes no events.
    async fn wait_for_slots(&mut self) {
        if !self.actions.slots.full() {
            return;
        }
        tracing::warn!(
            "{} shell actions wait for a slot (max_concurrent_actions); taking no events until some have started",
            crate::action::MAX_WAITING
        );
        // Waiting for actions to start is progress, not a wedge: the watchdog is fed.
        while self.actions.slots.full() {
            self.heartbeat.beat();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Each firing counted, silenced if its rule is, and its actions rendered: the jobs
    /// to start and the deliveries (numbered) to store.
    fn prepare(&mut self, firings: Vec<Firing>) -> (Vec<ShellJob>, Vec<(u64, Delivery)>) {
        let now = SystemTime::now();
        let mut jobs = Vec::new();
        let mut deliveries = Vec::new();
        for mut firing in firings {
            self.tally.count(&firing);
            self.quiet_in_window(&mut firing, now);
            self.silences.apply(&mut firing, now);
            let (rule, state) = (Arc::clone(&firing.rule), firing.state);
            let prepared = self.actions.dispatcher.prepare(firing);
            match state {
                FiringState::Firing => {
                    self.tally.summaries.insert(rule, prepared.summary);
                }
                FiringState::Resolved => {
                    self.tally.summaries.remove(&rule);
                }
            }
            jobs.extend(prepared.jobs);
            for d in prepared.deliveries {
                deliveries.push((self.actions.next_seq, d));
                self.actions.next_seq += 1;
            }
        }
        (jobs, deliveries)
    }

    /// Stores rule states, deliveries, alerts and the latest stream positions in one
    /// transaction; whether it was written. What a failed write could not store is kept
    /// for the next.
    async fn store_batch(
        &mut self,
        changes: Vec<(String, Option<Vec<u8>>)>,
        deliveries: &[(u64, Delivery)],
        alerts: Vec<(String, Option<Vec<u8>>)>,
    ) -> bool {
        // The latest of each stream's positions, kept until stored.
        self.unsaved.positions_since = None;
        let unsaved_positions = std::mem::take(&mut self.unsaved.positions);
        let positions: Vec<(String, Option<Vec<u8>>)> = unsaved_positions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_bytes()))
            .collect();
        if changes.is_empty() && deliveries.is_empty() && alerts.is_empty() && positions.is_empty()
        {
            return true;
        }
        let rows: Vec<(u64, Vec<u8>)> =
            deliveries.iter().map(|(k, d)| (*k, d.to_bytes())).collect();
        let state_changed = !changes.is_empty();
        let (c, a, p) = (changes.clone(), alerts.clone(), positions.clone());
        let written = blocking(&self.store, move |s| s.commit_with(&c, &rows, &a, &p)).await;
        let stored = match written {
            Ok(()) => {
                self.remember_positions(&positions);
                true
            }
            Err(e) => {
                // Deliveries are still attempted: losing an alert is worse than repeating
                // one; but they will not survive a restart. Rule states go with the next
                // write (later changes of a key after earlier ones).
                tracing::error!(error = %e, deliveries = deliveries.len(), "cannot write to the state store: these firings are not saved, and their deliveries would not survive a restart");
                crate::metrics::get().store_write_errors.inc();
                self.unsaved = Unsaved {
                    rules: latest_per_key(changes),
                    alerts: latest_per_key(alerts),
                    positions_since: (!unsaved_positions.is_empty()).then(Instant::now),
                    positions: unsaved_positions,
                };
                false
            }
        };
        if state_changed {
            notify(&[NotifyState::Status(&self.status_line())]);
        }
        stored
    }

    /// Positions stored: a log watch that starts again (a reload) takes up from there.
    pub(super) fn remember_positions(&self, positions: &[(String, Option<Vec<u8>>)]) {
        if positions.is_empty() {
            return;
        }
        let mut known = self
            .intake
            .shared
            .positions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (k, v) in positions {
            match v.as_deref().and_then(crate::event::Mark::from_bytes) {
                Some(p) => {
                    known.insert(k.clone(), p);
                }
                None => {
                    known.remove(k);
                }
            }
        }
    }

    /// After the store's file was damaged under hark and made anew: the rule states and
    /// silences hark holds are saved into it.
    pub(super) async fn save_again_if_rebuilt(&mut self) {
        if !self.store.take_rebuilt() {
            return;
        }
        let rules: Vec<(String, Option<Vec<u8>>)> = self
            .engine
            .all_states(Instant::now(), SystemTime::now())
            .into_iter()
            .map(|(k, b)| (k, Some(b)))
            .collect();
        let silences = self.silences.all();
        let count = (rules.len(), silences.len());
        let saved = blocking(&self.store, move |s| {
            s.commit(&rules, &[], &[])?;
            s.set_silences(&silences)
        })
        .await;
        match saved {
            Ok(()) => tracing::warn!(
                rule_states = count.0,
                silences = count.1,
                "saved again into the new state store"
            ),
            Err(e) => tracing::error!(error = %e, "cannot save into the new state store"),
        }
    }

    /// `hark_rule_firing`: one series per rule and watch firing now: how many of its
    /// states (one, or one per group) are firing.
    pub(super) fn export_firing(&self) {
        let family = &crate::metrics::get().rules_firing;
        family.clear();
        for ((rule, watch), n) in self.engine.firing_counts() {
            family
                .get_or_create(&crate::metrics::labels("rule", &rule, "watch", &watch))
                .set(n as i64);
        }
    }
}

impl Daemon {
    /// `hark_rule_deadline_seconds`: for each rule that expects a match, the nearest time
    /// (unix seconds) one is due by.
    pub(super) fn export_deadlines(&self) {
        let family = &crate::metrics::get().rule_deadline;
        family.clear();
        for (rule, due) in self.engine.deadlines() {
            let secs = due
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            family
                .get_or_create(&crate::metrics::label("rule", &rule))
                .set(secs);
        }
    }
}

/// Rule state, firing-alert and stream-position changes not stored yet: those of the
/// events being judged, and those a failed write could not store, kept for the next.
#[derive(Default)]
pub(super) struct Unsaved {
    pub(super) rules: Vec<(String, Option<Vec<u8>>)>,
    pub(super) alerts: Vec<(String, Option<Vec<u8>>)>,
    /// The latest position of each stream.
    pub(super) positions: std::collections::HashMap<Arc<str>, crate::event::Mark>,
    /// Since when positions wait to be stored (with nothing else to store).
    pub(super) positions_since: Option<Instant>,
}

/// How long positions that led to nothing else wait before they are stored.
pub(super) const POSITION_DELAY: Duration = Duration::from_secs(1);

impl Daemon {
    /// When waiting positions are due to be stored.
    pub(super) fn positions_due(&self) -> Option<Instant> {
        self.unsaved.positions_since.map(|t| t + POSITION_DELAY)
    }

    /// Stores the waiting positions now (hark stops).
    pub(super) async fn store_positions(&mut self) {
        if self.unsaved.positions.is_empty() {
            return;
        }
        self.unsaved.positions_since = Instant::now().checked_sub(POSITION_DELAY);
        self.act(Vec::new()).await;
    }
}

/// The last change of each key, in the order of those last changes.
pub(super) fn latest_per_key(
    changes: Vec<(String, Option<Vec<u8>>)>,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<_> = changes
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsaved_changes_keep_the_last_of_each_key_in_order() {
        let c = |k: &str, v: Option<&[u8]>| (k.to_string(), v.map(<[u8]>::to_vec));
        let merged = latest_per_key(vec![
            c("a", Some(b"1")),
            c("b", Some(b"1")),
            c("a", None),
            c("c", Some(b"1")),
            c("b", Some(b"2")),
        ]);
        assert_eq!(
            merged,
            vec![c("a", None), c("c", Some(b"1")), c("b", Some(b"2"))]
        );
    }
}
