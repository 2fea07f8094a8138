//! A graceful stop: positions stored, listeners closed, watches stopped, then running
//! actions and deliveries in flight get the grace period (`stop_timeout`); deliveries
//! still pending after it stay in the outbox for the next start.

use sd_notify::NotifyState;

use super::{notify, Daemon, Inbox, Stops};

impl Daemon {
    pub(super) async fn stop(mut self, mut inbox: Inbox, stops: Stops) -> anyhow::Result<()> {
        notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        self.store_positions().await;
        stops.listeners.cancel();
        let _ = std::fs::remove_file(&self.config.daemon.control_socket);
        // Watch threads may be blocked sending to the engine; closing the queue frees them.
        inbox.events.close();
        self.intake.stop().await?;
        self.actions.shutdown(self.config.daemon.stop_timeout).await;
        stops.outbox.cancel();
        tracing::info!("hark stopped");
        Ok(())
    }
}
