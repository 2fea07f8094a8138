//! NATS through async-nats. With `jetstream = true` a message counts once JetStream
//! acknowledged storing it, and `Nats-Msg-Id` lets it drop a duplicate; core NATS has no
//! acknowledgement, so there a message counts once a flush returned (the server has it).

use async_nats::{Client, ConnectOptions, HeaderMap};
use tokio::sync::Mutex;

use super::{Message, Refused, CONNECT_TIMEOUT};

pub struct Conn {
    url: String,
    client: Mutex<Option<Client>>,
}

impl Conn {
    pub fn new(url: String) -> Conn {
        Conn {
            url,
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
        let c = ConnectOptions::new()
            .name(concat!("hark/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(self.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to the NATS server: {e}"))?;
        *client = Some(c.clone());
        Ok(c)
    }

    pub async fn publish(&self, jetstream: bool, m: &Message<'_>) -> Result<(), Refused> {
        let client = self.client().await?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", m.key);
        headers.insert("Content-Type", m.content_type);
        let payload = bytes::Bytes::copy_from_slice(m.body);
        let subject = m.route.to_string();
        if jetstream {
            let js = async_nats::jetstream::new(client);
            let ack = js
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| format!("JetStream publish failed: {e}"))?;
            ack.await
                .map_err(|e| format!("no JetStream acknowledgement: {e}"))?;
        } else {
            client
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| format!("NATS publish failed: {e}"))?;
            client
                .flush()
                .await
                .map_err(|e| format!("NATS flush failed: {e}"))?;
        }
        Ok(())
    }
}
