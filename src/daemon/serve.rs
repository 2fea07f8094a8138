//! The main loop: one turn per event batch, call, signal, reload or timer, after which
//! what the engine decided is stored and set going (act.rs).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::intake::Lanes;
use super::{footprint, reload, sleep_until, Daemon, Inbox, Signal, BATCH_TIME, EVENT_BATCH};
use crate::event::{Event, Firing};

impl Daemon {
    /// Runs until `shutdown` is cancelled or every watch is gone.
    pub(super) async fn serve(&mut self, inbox: &mut Inbox, shutdown: &CancellationToken) {
        // A reload loads the configuration off this loop; events keep being judged
        // meanwhile.
        let (loaded_tx, mut loaded) = mpsc::channel::<reload::Loaded>(1);
        let mut loading = reload::Loading::default();
        let heartbeat = self.heartbeat.clone();
        loop {
            heartbeat.waiting();
            let deadline = self.engine.next_deadline();
            let positions_due = self.positions_due();
            let window_end = self.next_window_end();
            let firings = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(signal) = inbox.signals.recv() => {
                    heartbeat.beat();
                    match signal {
                        Signal::Reload => loading.request(&self.paths, &loaded_tx),
                    }
                    continue;
                }
                Some(result) = loaded.recv() => {
                    heartbeat.beat();
                    self.reload(result).await;
                    loading.done(&self.paths, &loaded_tx);
                    footprint::give_back_start_up();
                    footprint::give_back_again_later(footprint::again_after(self.longest_interval()));
                    continue;
                }
                Some(call) = inbox.calls.recv() => {
                    heartbeat.beat();
                    self.answer(call).await;
                    continue;
                }
                // The lane of units, processes, checks and pushes first: a flood of
                // lines waits behind them, not they behind it (but for the streams' fair
                // share, `Lanes::streams_turn`).
                ev = inbox.events.events.recv(), if !inbox.events.streams_turn() => match ev {
                    Some(ev) => {
                        heartbeat.beat();
                        self.judge_waiting(ev, true, &mut inbox.events)
                    }
                    None => break,
                },
                ev = inbox.events.streams.recv() => match ev {
                    Some(ev) => {
                        heartbeat.beat();
                        self.judge_waiting(ev, false, &mut inbox.events)
                    }
                    None => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    heartbeat.beat();
                    self.on_tick()
                }
                _ = sleep_until(window_end), if window_end.is_some() => {
                    heartbeat.beat();
                    self.windows_closed()
                }
                _ = sleep_until(positions_due), if positions_due.is_some() => {
                    heartbeat.beat();
                    Vec::new()
                }
            };
            self.act(firings).await;
            // The other tasks of this thread (the watchdog, the control socket's
            // connections, metrics) get their turn between batches.
            tokio::task::yield_now().await;
        }
    }

    /// The event, and those already waiting behind it, judged together so that their
    /// firings are stored in one transaction: a burst costs one write, not one per event.
    /// A batch is cut short after BATCH_TIME so that calls and signals wait no longer.
    /// An event of the first lane (a unit failing, a process exiting) that arrives during
    /// a batch of streamed lines is judged next and ends the batch: its action starts
    /// with this batch's firings, not after the queue of lines. A storm in the first lane
    /// leaves the streams their share (`Lanes::next`). `urgent`: `first` is of the first
    /// lane.
    fn judge_waiting(&mut self, first: Event, urgent: bool, lanes: &mut Lanes) -> Vec<Firing> {
        let started = Instant::now();
        lanes.taken(urgent);
        let mut firings = self.on_event(Arc::new(first));
        for _ in 1..EVENT_BATCH {
            if started.elapsed() > BATCH_TIME {
                break;
            }
            let Some((ev, urgent)) = lanes.next() else {
                break;
            };
            firings.extend(self.on_event(Arc::new(ev)));
            if urgent && lanes.events.is_empty() {
                break;
            }
        }
        // Room made in the queues: a file thread waiting for it goes on.
        crate::watch::inotify::room_made();
        firings
    }
}
