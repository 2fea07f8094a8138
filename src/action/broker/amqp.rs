//! AMQP 0-9-1 (RabbitMQ) through lapin: persistent, mandatory messages on a channel in
//! confirm mode. A message counts once the broker confirmed it; one it could not route
//! (no queue bound) is returned with the confirm and tried again.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};

use super::{Message, Refused, CONNECT_TIMEOUT};
use crate::config::TlsOptions;

pub struct Conn {
    url: String,
    tls: TlsOptions,
    /// The open connection and its confirm-mode channel, once opened.
    session: Mutex<Option<(Connection, Channel)>>,
}

impl Conn {
    pub fn new(url: String, tls: TlsOptions) -> Conn {
        Conn {
            url,
            tls,
            session: Mutex::new(None),
        }
    }

    async fn channel(&self) -> Result<Channel, Refused> {
        let mut session = self.session.lock().await;
        if let Some((conn, ch)) = &*session {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *session = None;
        let open = async {
            let conn = self
                .connect()
                .await
                .map_err(|e| format!("cannot connect to the AMQP broker: {e}"))?;
            let ch = conn
                .create_channel()
                .await
                .map_err(|e| format!("cannot open an AMQP channel: {e}"))?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| format!("the AMQP broker refuses publisher confirms: {e}"))?;
            Ok::<_, Refused>((conn, ch))
        };
        let (conn, ch) = tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| "cannot connect to the AMQP broker: timed out".to_string())??;
        *session = Some((conn, ch.clone()));
        Ok(ch)
    }

    /// A connection: plain for amqp://; for amqps://, TLS as `ca` and `tls_verify` say.
    async fn connect(&self) -> Result<Connection, String> {
        let uri: AMQPUri = self
            .url
            .parse()
            .map_err(|_| "the broker URL does not parse".to_string())?;
        if uri.scheme != AMQPScheme::AMQPS {
            return Connection::connect_uri(uri, ConnectionProperties::default())
                .await
                .map_err(|e| e.to_string());
        }
        let config = crate::tls::client_config(&self.tls)?;
        let connector = RustlsConnector::from(config);
        let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
        Connection::connector(
            uri,
            runtime,
            async move |uri, runtime| {
                let host = uri.authority.host.clone();
                let addr = runtime.to_socket_addrs((host.clone(), uri.authority.port));
                let plain = AsyncTcpStream::connect(&runtime, addr).await?;
                Ok(plain.into_rustls(&connector, &host).await?)
            },
            ConnectionProperties::default(),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Forgets a session that failed, so the next attempt opens a new one.
    async fn drop_session(&self) {
        if let Some((conn, _)) = self.session.lock().await.take() {
            let _ = conn.close(320, "hark reconnects".into()).await;
        }
    }

    /// Publishes each message, then waits for each confirmation, in order.
    pub async fn publish_all(
        &self,
        exchange: &str,
        msgs: &[Message<'_>],
    ) -> Vec<Result<(), Refused>> {
        let ch = match self.channel().await {
            Ok(ch) => ch,
            Err(e) => return super::all_failed(msgs.len(), e),
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms = Vec::with_capacity(msgs.len());
        let mut broken = None;
        for m in msgs {
            let props = BasicProperties::default()
                .with_message_id(m.key.into())
                .with_content_type(m.content_type.into())
                .with_delivery_mode(2);
            match ch
                .basic_publish(exchange.into(), m.route.into(), options, m.body, props)
                .await
            {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    broken = Some(format!("AMQP publish failed: {e}"));
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(msgs.len());
        for (confirm, m) in confirms.into_iter().zip(msgs) {
            out.push(match confirm.await {
                Ok(Confirmation::Ack(None)) => Ok(()),
                Ok(Confirmation::Ack(Some(_))) => Err(format!(
                    "the AMQP broker could not route it: no queue is bound to exchange {exchange:?} for routing key {:?}",
                    m.route
                )),
                Ok(Confirmation::Nack(_)) => Err("the AMQP broker refused it (nack)".to_string()),
                Ok(Confirmation::NotRequested) => {
                    let why = "the AMQP channel is not in confirm mode".to_string();
                    broken = Some(why.clone());
                    Err(why)
                }
                Err(e) => {
                    let why = format!("AMQP publish failed: {e}");
                    broken = Some(why.clone());
                    Err(why)
                }
            });
        }
        if let Some(why) = broken {
            self.drop_session().await;
            out.resize(msgs.len(), Err(why));
        }
        super::rest_not_sent(out, msgs.len())
    }
}
