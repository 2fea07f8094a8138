//! SIGHUP: the configuration is loaded and checked again; a bad one changes nothing (its
//! errors are logged and shown by `hark status`), a good one replaces the old, restarting
//! only the watches whose definition changed. Rules whose definition did not change keep
//! all their state; the others keep what a restart would (firing, last fired).

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use sd_notify::NotifyState;
use tokio::sync::mpsc;

use super::{blocking, notify, Daemon};
use crate::config::Config;
use crate::control::ReloadStatus;
use crate::event::rfc3339;

/// A configuration loaded off the main loop, and when its loading started.
pub(super) struct Loaded {
    result: Result<Result<Config, crate::config::ConfigErrors>, tokio::task::JoinError>,
    started: Instant,
}

/// Whether a load is under way, and whether another SIGHUP came meanwhile: that one loads
/// again once this one is applied (the files may have changed since it read them).
#[derive(Default)]
pub(super) struct Loading {
    busy: bool,
    again: bool,
}

impl Loading {
    /// A SIGHUP: starts loading, or marks that another load follows the one under way.
    pub(super) fn request(&mut self, paths: &[std::path::PathBuf], tx: &mpsc::Sender<Loaded>) {
        if self.busy {
            self.again = true;
            return;
        }
        self.busy = true;
        let mut state = vec![NotifyState::Reloading];
        if let Ok(t) = NotifyState::monotonic_usec_now() {
            state.push(t);
        }
        notify(&state);
        let (paths, tx) = (paths.to_vec(), tx.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || Config::load(&paths)).await;
            let _ = tx.send(Loaded { result, started }).await;
        });
    }

    /// The load was applied; another starts if one was asked for meanwhile.
    pub(super) fn done(&mut self, paths: &[std::path::PathBuf], tx: &mpsc::Sender<Loaded>) {
        self.busy = false;
        if std::mem::take(&mut self.again) {
            self.request(paths, tx);
        }
    }
}

impl Daemon {
    /// Applies a configuration loaded off the loop, or records why it was refused.
    pub(super) async fn reload(&mut self, loaded: Loaded) {
        let started = loaded.started;
        let status = match loaded.result {
            Ok(Ok(config)) => match self.suspicious(&config) {
                None => self.apply(config).await,
                Some(why) => {
                    tracing::error!(
                        "reload refused: {why}; the previous configuration keeps running"
                    );
                    ReloadStatus {
                        time: rfc3339(SystemTime::now()),
                        ok: false,
                        errors: vec![why],
                    }
                }
            },
            Ok(Err(errors)) => {
                for e in &errors.0 {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    errors = errors.0.len(),
                    "reload refused: the configuration has errors; the previous one keeps running"
                );
                ReloadStatus {
                    time: rfc3339(SystemTime::now()),
                    ok: false,
                    errors: errors.0.iter().map(ToString::to_string).collect(),
                }
            }
            Err(e) => ReloadStatus {
                time: rfc3339(SystemTime::now()),
                ok: false,
                errors: vec![format!("loading the configuration panicked: {e}")],
            },
        };
        let m = crate::metrics::get();
        let result = if status.ok { "ok" } else { "refused" };
        m.reloads
            .get_or_create(&crate::metrics::label("result", result))
            .inc();
        m.reload_seconds.set(started.elapsed().as_secs_f64());
        self.export_firing();
        self.export_deadlines();
        if status.ok {
            // The windows of rules new to the configuration start now, and are stored now.
            self.act(Vec::new()).await;
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "configuration reloaded"
            );
        }
        self.last_reload = Some(status);
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status_line())]);
    }

    /// Why a configuration that validated still looks like one caught half-written (an
    /// editor or a config manager truncating a file before writing it), and must not
    /// replace one that runs rules. A restart runs it all the same: that is asking for it.
    fn suspicious(&self, new: &Config) -> Option<String> {
        let running = self.config.rules.len();
        if running == 0 {
            return None;
        }
        let empty: Vec<String> = new
            .files
            .iter()
            .filter(|f| self.config.files.contains(f))
            .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() == 0))
            .map(|f| f.display().to_string())
            .collect();
        if !empty.is_empty() {
            return Some(format!(
                "{} empty (being rewritten?); restart hark to run the configuration as it is",
                empty.join(", ") + if empty.len() == 1 { " is" } else { " are" }
            ));
        }
        if new.rules.is_empty() {
            return Some(format!(
                "the new configuration has no rules and the running one has {running} (a file \
                 half-written?); restart hark to run a configuration without rules"
            ));
        }
        None
    }

    /// Replaces the running configuration with `new`, which validated.
    async fn apply(&mut self, mut new: Config) -> ReloadStatus {
        let mut errors = Vec::new();
        self.keep_restart_only_settings(&mut new);
        let host_changed = new.daemon.host != self.config.daemon.host;
        let watches = self.intake.replace(&self.config, &new).await;
        errors.extend(watches.errors);
        self.tally
            .seen
            .retain(|w, _| new.watches.contains_key(&**w) && !host_changed);

        // Rules.
        let unchanged: HashSet<String> = new
            .rules
            .iter()
            .filter(|(n, r)| {
                self.config
                    .rules
                    .get(*n)
                    .is_some_and(|o| o.definition == r.definition)
            })
            .map(|(n, _)| n.clone())
            .collect();
        self.engine
            .reload(&new, &unchanged, Instant::now(), SystemTime::now());
        if let Err(e) = self.forget_stale_states().await {
            tracing::warn!(error = %e, "cannot remove the saved states of rules no longer configured");
        }

        // Actions: new ones for new firings; the old dispatcher's running actions finish.
        let stale = self.actions.reconfigure(&new);
        if !stale.is_empty() {
            let removals: Vec<_> = stale.into_iter().map(|k| (k, None)).collect();
            if let Err(e) = blocking(&self.store, move |s| s.commit(&[], &[], &removals)).await {
                tracing::warn!(error = %e, "cannot forget the alerts of removed actions");
            }
        }

        tracing::info!(
            watches_restarted = watches.started,
            watches_stopped = watches.stopped,
            rules_kept = unchanged.len(),
            rules = new.rules.len(),
            "new configuration in place"
        );
        crate::metrics::get().declare(
            new.watches.keys().map(String::as_str),
            new.rules.keys().map(String::as_str),
        );
        if let Some(web) = &self.web {
            web.reconfigure(&new);
        }
        self.config = new;
        ReloadStatus {
            time: rfc3339(SystemTime::now()),
            ok: errors.is_empty(),
            errors,
        }
    }

    /// `[daemon]` settings a running daemon cannot change: the new values are logged and
    /// wait for the next restart.
    fn keep_restart_only_settings(&self, new: &mut Config) {
        let old = &self.config.daemon;
        let d = &mut new.daemon;
        let mut kept = Vec::new();
        if d.state_dir != old.state_dir {
            kept.push("state_dir");
            d.state_dir = old.state_dir.clone();
        }
        if d.control_socket != old.control_socket {
            kept.push("control_socket");
            d.control_socket = old.control_socket.clone();
        }
        if d.control_group.as_ref().map(|g| g.id) != old.control_group.as_ref().map(|g| g.id) {
            kept.push("control_group");
            d.control_group = old.control_group.clone();
        }
        if d.metrics != old.metrics {
            kept.push("metrics");
            d.metrics = old.metrics;
        }
        if !kept.is_empty() {
            tracing::warn!(
                "[daemon] {} changed: this takes effect at the next restart",
                kept.join(", ")
            );
        }
    }

    /// Removes the saved states the reloaded engine no longer holds: of rules and watches
    /// the new configuration does not have, of groups a changed rule does not keep. Every
    /// state it holds stays stored (firing groups of `group_by` rules included).
    async fn forget_stale_states(&self) -> anyhow::Result<()> {
        let valid: HashSet<String> = self
            .engine
            .all_states(Instant::now(), SystemTime::now())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        // A rule removed a moment ago may come back: its saved state stays meanwhile.
        let retired: HashSet<String> = self.engine.retired_rules().map(str::to_string).collect();
        let stored = blocking(&self.store, |s| s.rule_states()).await?;
        let removals: Vec<_> = stored
            .into_iter()
            .filter(|(k, _)| !valid.contains(k))
            .filter(|(k, _)| !k.split_once('/').is_some_and(|(r, _)| retired.contains(r)))
            .map(|(k, _)| (k, None))
            .collect();
        if !removals.is_empty() {
            blocking(&self.store, move |s| s.commit(&removals, &[], &[])).await?;
        }
        Ok(())
    }
}
