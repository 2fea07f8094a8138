//! Alertmanager alerts that fire: kept (in the store, beside the rule state) and posted
//! again every `resend`, each post saying the alert ends after four of those. A re-post
//! is not stored and not retried (the next one follows), and is skipped while its
//! receiver's lane still has a delivery of the rule to make.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::send::{attempt, Outcome};
use super::{lock, new_key, receiver, Delivery, Job, Outbox, Shared};
use crate::config::{ActionConfig, ActionKind};

/// An Alertmanager alert that fires, as stored to be posted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub action: String,
    pub rule: String,
    pub watch: String,
    /// The alerts array to post, without `endsAt`.
    pub body: String,
}

/// The key of an Alertmanager alert. Names cannot contain `/`.
pub fn alert_key(action: &str, rule: &str, watch: &str) -> String {
    format!("{action}/{rule}/{watch}")
}

/// The changes to the stored firing alerts that deliveries make: a firing alert is kept
/// (to be posted again), a resolved one removed. The caller commits them with the
/// deliveries.
pub fn alert_changes(deliveries: &[(u64, Delivery)]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for (_, d) in deliveries {
        let Some(key) = &d.alert else { continue };
        if d.target != 0 {
            continue;
        }
        let value = (d.state == "firing").then(|| {
            // `action/rule/scope`: names hold no '/', a scope (a group's values) may.
            let watch = key.splitn(3, '/').nth(2).unwrap_or_default().to_string();
            serde_json::to_vec(&ActiveAlert {
                action: d.action.clone(),
                rule: d.rule.clone(),
                watch,
                body: d.body.clone(),
            })
            .unwrap_or_default()
        });
        out.retain(|(k, _)| k != key);
        out.push((key.clone(), value));
    }
    out
}

impl Outbox {
    /// Takes back the firing alerts a previous run stored, those whose rule still fires
    /// (`firing` holds `rule/watch` keys) with the same Alertmanager action; returns the
    /// keys of the others, for the caller to remove. Alertmanager resolves those by itself
    /// when their last `endsAt` passes.
    pub fn restore_alerts(
        &self,
        stored: Vec<(String, Vec<u8>)>,
        firing: &HashSet<String>,
    ) -> Vec<String> {
        let mut stale = Vec::new();
        let mut active = lock(&self.shared.active);
        for (key, bytes) in stored {
            let alert = serde_json::from_slice::<ActiveAlert>(&bytes)
                .ok()
                .filter(|a| {
                    firing.contains(&crate::store::key(&a.rule, &a.watch))
                        && self.shared.is_alertmanager(&a.action)
                });
            match alert {
                Some(a) => {
                    active.insert(key, a);
                }
                None => stale.push(key),
            }
        }
        stale
    }

    /// Posts every firing alert now (those restored at start), then again every `resend`
    /// of its action.
    pub fn start_resending(&self) {
        self.shared.resend(None);
        self.spawn_resenders();
    }

    fn spawn_resenders(&self) {
        let stop = {
            let mut slot = lock(&self.shared.resending);
            slot.cancel();
            *slot = self.shared.stop.child_token();
            slot.clone()
        };
        let actions = self
            .shared
            .actions
            .read()
            .unwrap_or_else(|p| p.into_inner());
        for (name, action) in actions.iter() {
            if let ActionKind::Alertmanager(am) = &action.kind {
                tokio::spawn(resender(
                    Arc::clone(&self.shared),
                    name.clone(),
                    am.resend,
                    stop.clone(),
                ));
            }
        }
    }

    /// Takes a reloaded configuration's actions: pending deliveries and retries use them
    /// from their next attempt. Returns the keys of firing alerts whose action is gone or
    /// no longer an alertmanager action, no longer posted, for the caller to remove.
    pub fn reconfigure(&self, actions: HashMap<String, Arc<ActionConfig>>) -> Vec<String> {
        *self
            .shared
            .actions
            .write()
            .unwrap_or_else(|p| p.into_inner()) = actions;
        let mut stale = Vec::new();
        lock(&self.shared.active).retain(|key, a| {
            let keep = self.shared.is_alertmanager(&a.action);
            if !keep {
                stale.push(key.clone());
            }
            keep
        });
        self.spawn_resenders();
        stale
    }
}

impl Shared {
    /// Posts the firing alerts (of one action, or all) again, to every receiver whose
    /// lane is idle.
    fn resend(self: &Arc<Self>, only: Option<&str>) {
        let alerts: Vec<ActiveAlert> = lock(&self.active)
            .values()
            .filter(|a| only.is_none_or(|o| a.action == o))
            .cloned()
            .collect();
        for a in alerts {
            let action = self.action(&a.action);
            let Some(ActionKind::Alertmanager(am)) = action.as_deref().map(|c| &c.kind) else {
                continue;
            };
            for target in 0..am.endpoints.len() as u32 {
                let delivery = Delivery {
                    key: new_key(),
                    rule: a.rule.clone(),
                    action: a.action.clone(),
                    state: "firing".into(),
                    body: a.body.clone(),
                    content_type: "application/json".into(),
                    accepted: SystemTime::now(),
                    attempts: 0,
                    failed: None,
                    target,
                    alert: Some(alert_key(&a.action, &a.rule, &a.watch)),
                    watch: a.watch.clone(),
                    route: None,
                    subject: None,
                };
                self.send(Job::Repost(delivery), true);
            }
        }
    }
}

async fn resender(shared: Arc<Shared>, action: String, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => shared.resend(Some(&action)),
        }
    }
}

/// One attempt to post a firing alert again; a failure waits for the next re-post.
pub(super) async fn repost(shared: &Shared, d: Delivery) {
    let action = shared.action(&d.action);
    let Some(to) = receiver(action.as_deref(), d.target) else {
        return;
    };
    match attempt(&shared.client(to.tls), &to, &d).await {
        Outcome::Delivered => {
            crate::metrics::get().delivery(&d.action, "reposted");
            tracing::debug!(rule = %d.rule, action = %d.action, target = d.target, "firing alert posted again")
        }
        Outcome::Retry(_, why) | Outcome::Failed(why) => {
            crate::metrics::get().delivery(&d.action, "repost_failed");
            tracing::warn!(rule = %d.rule, action = %d.action, target = d.target, error = %why, "posting a firing alert again failed; the next re-post follows")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(state: &str, target: u32, alert: Option<&str>) -> Delivery {
        Delivery {
            key: new_key(),
            rule: "r".into(),
            action: "am".into(),
            state: state.into(),
            body: "[{}]".into(),
            content_type: "application/json".into(),
            accepted: SystemTime::now(),
            attempts: 0,
            failed: None,
            target,
            alert: alert.map(str::to_string),
            watch: "w".into(),
            route: None,
            subject: None,
        }
    }

    #[test]
    fn firing_alerts_are_kept_once_and_a_resolve_removes_them() {
        let key = alert_key("am", "r", "w");
        let firing = vec![
            (1, delivery("firing", 0, Some(&key))),
            (2, delivery("firing", 1, Some(&key))),
            (3, delivery("firing", 0, None)),
        ];
        let changes = alert_changes(&firing);
        assert_eq!(changes.len(), 1, "one per alert, not per receiver");
        let kept: ActiveAlert = serde_json::from_slice(changes[0].1.as_ref().unwrap()).unwrap();
        assert_eq!((kept.rule.as_str(), kept.watch.as_str()), ("r", "w"));
        let mut both = firing;
        both.push((4, delivery("resolved", 0, Some(&key))));
        assert_eq!(alert_changes(&both), vec![(key, None)], "the last one wins");
    }

    #[test]
    fn ends_at_is_set_only_where_it_is_missing() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
        let body = r#"[{"labels":{"a":"b"}},{"endsAt":"2026-01-01T00:00:00Z"}]"#;
        let v: serde_json::Value =
            serde_json::from_str(&crate::action::payload::with_ends_at(body, t).unwrap()).unwrap();
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:01:00.000Z");
        assert_eq!(v[1]["endsAt"], "2026-01-01T00:00:00Z");
        assert_eq!(crate::action::payload::with_ends_at("not json", t), None);
    }
}
