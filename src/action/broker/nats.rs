//! NATS through async-nats. With `jetstream = true` a message counts once JetStream
//! acknowledged storing it, and `Nats-Msg-Id` lets it drop a duplicate; core NATS has no
//! acknowledgement, so there a message counts once a flush returned (the server has it).

use async_nats::{Client, ConnectOptions, HeaderMap};
use tokio::sync::Mutex;

use super::{Message, Refused, CONNECT_TIMEOUT};
use crate::config::TlsOptions;

pub struct Conn {
    url: String,
    tls: TlsOptions,
    client: Mutex<Option<Client>>,
}

impl Conn {
    pub fn new(url: String, tls: TlsOptions) -> Conn {
        Conn {
            url,
            tls,
            client: Mutex::new(None),
        }
    }

    async fn client(&self) -> Result<Client, Refused> {
        let mut client = self.client.lock().await;
        if let Some(c) = &*client {
            // async-nats reconnects by itself once connected; a closed client is replaced.
            if c.connection_state() != async_nats::connection::State::Disconnected {
                return Ok(c.clone());
            }
        }
        let mut options = ConnectOptions::new();
        if crate::config::is_broker_tls(&self.url) {
            let config = crate::tls::client_config(&self.tls)?;
            options = options
                .require_tls(true)
                .tls_client_config((*config).clone());
        }
        let c = options
            .name(concat!("hark/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(self.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to the NATS server: {e}"))?;
        *client = Some(c.clone());
        Ok(c)
    }

    /// Publishes each message; then waits for each JetStream ack in order, or flushes once.
    pub async fn publish_all(
        &self,
        jetstream: bool,
        msgs: &[Message<'_>],
    ) -> Vec<Result<(), Refused>> {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return super::all_failed(msgs.len(), e),
        };
        let js = jetstream.then(|| async_nats::jetstream::new(client.clone()));
        let mut acks = Vec::with_capacity(msgs.len());
        let mut refused = None;
        for m in msgs {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", m.key);
            headers.insert("Content-Type", m.content_type);
            let payload = bytes::Bytes::copy_from_slice(m.body);
            let subject = m.route.to_string();
            let sent = match &js {
                Some(js) => js
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map(Some)
                    .map_err(|e| format!("JetStream publish failed: {e}")),
                None => client
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map(|()| None)
                    .map_err(|e| format!("NATS publish failed: {e}")),
            };
            match sent {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(msgs.len());
        if js.is_none() {
            let flushed = client
                .flush()
                .await
                .map_err(|e| format!("NATS flush failed: {e}"));
            out = vec![flushed; acks.len()];
        } else {
            for ack in acks.into_iter().flatten() {
                out.push(
                    ack.await
                        .map(|_| ())
                        .map_err(|e| format!("no JetStream acknowledgement: {e}")),
                );
            }
        }
        if let Some(why) = refused {
            out.push(Err(why));
        }
        super::rest_not_sent(out, msgs.len())
    }
}
