//! MQTT 3.1.1 through rumqttc, at QoS 1: a message counts once the broker's PUBACK for it
//! arrived. rumqttc numbers publishes as it sends them, in the order they were handed to
//! it; each publish here waits in that order, learns its packet id from the event loop's
//! `Outgoing::Publish`, and is answered by the PUBACK with that id. A connection that
//! breaks fails every publish waiting on it and is replaced at the next attempt (a fresh
//! event loop, so nothing is sent again behind the outbox's back).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::oneshot;

use super::{endpoint, Message, Refused};
use crate::config::TlsOptions;

type Waiter = oneshot::Sender<Result<(), Refused>>;

/// Publishes handed to the event loop and not yet acknowledged.
#[derive(Default)]
struct Pending {
    /// Not yet sent, in the order they were handed over.
    unsent: VecDeque<Waiter>,
    /// Sent, by packet id.
    sent: HashMap<u16, Waiter>,
}

struct Session {
    client: AsyncClient,
    pending: Arc<Mutex<Pending>>,
    alive: Arc<AtomicBool>,
}

pub struct Conn {
    url: String,
    tls: TlsOptions,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    pub fn new(url: String, tls: TlsOptions) -> Conn {
        Conn {
            url,
            tls,
            session: tokio::sync::Mutex::new(None),
        }
    }

    async fn session(&self) -> Result<Arc<Session>, Refused> {
        let mut session = self.session.lock().await;
        if let Some(s) = &*session {
            if s.alive.load(Ordering::Acquire) {
                return Ok(Arc::clone(s));
            }
        }
        let secure = crate::config::is_broker_tls(&self.url);
        let e = endpoint(&self.url, if secure { 8883 } else { 1883 })?;
        let id = format!("hark-{}-{:08x}", std::process::id(), fastrand::u32(..));
        let mut options = MqttOptions::new(id, e.host, e.port);
        if secure {
            let config = crate::tls::client_config(&self.tls)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_request_channel_capacity(1024)
            .set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some((user, password)) = e.user {
            options.set_credentials(user, password);
        }
        let (client, events) = AsyncClient::new(options, 1024);
        let s = Arc::new(Session {
            client,
            pending: Arc::new(Mutex::new(Pending::default())),
            alive: Arc::new(AtomicBool::new(true)),
        });
        tokio::spawn(run(events, Arc::clone(&s.pending), Arc::clone(&s.alive)));
        *session = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Hands every message to the event loop, then waits for each PUBACK, in order.
    pub async fn publish_all(
        &self,
        retain: bool,
        msgs: &[Message<'_>],
    ) -> Vec<Result<(), Refused>> {
        let s = match self.session().await {
            Ok(s) => s,
            Err(e) => return super::all_failed(msgs.len(), e),
        };
        let mut acks = Vec::with_capacity(msgs.len());
        let mut refused = None;
        for m in msgs {
            let (tx, rx) = oneshot::channel();
            // Queued and handed over under one lock, so the queue's order is the order
            // in which the event loop numbers them.
            let mut pending = lock(&s.pending);
            match s
                .client
                .try_publish(m.route, QoS::AtLeastOnce, retain, m.body.to_vec())
            {
                Ok(()) => {
                    pending.unsent.push_back(tx);
                    acks.push(rx);
                }
                Err(e) => {
                    refused = Some(format!("cannot hand the message to the MQTT client: {e}"));
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(msgs.len());
        for rx in acks {
            out.push(match rx.await {
                Ok(r) => r,
                Err(_) => Err("the MQTT connection closed before the PUBACK".to_string()),
            });
        }
        if let Some(why) = refused {
            out.push(Err(why));
        }
        super::rest_not_sent(out, msgs.len())
    }
}

/// Drives the connection: numbers publishes, answers them on PUBACK, and on an error
/// fails all that wait and ends (the next publish opens a new connection).
async fn run(mut events: EventLoop, pending: Arc<Mutex<Pending>>, alive: Arc<AtomicBool>) {
    let why = loop {
        match events.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut p = lock(&pending);
                if let Some(w) = p.unsent.pop_front() {
                    p.sent.insert(pkid, w);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(w) = lock(&pending).sent.remove(&ack.pkid) {
                    let _ = w.send(Ok(()));
                }
            }
            Ok(_) => {}
            Err(e) => break format!("MQTT connection: {e}"),
        }
    };
    alive.store(false, Ordering::Release);
    let mut guard = lock(&pending);
    let p = &mut *guard;
    for w in p.unsent.drain(..).chain(p.sent.drain().map(|(_, w)| w)) {
        let _ = w.send(Err(why.clone()));
    }
}
