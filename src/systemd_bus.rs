//! systemd's manager on the system bus, as the `unit` watch and the `systemd` action use
//! it: the names, one connection per user, properties and signals.

use std::collections::HashMap;

use zbus::message::Type;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, MessageStream};

pub const DEST: &str = "org.freedesktop.systemd1";
pub const PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";
pub const UNIT: &str = "org.freedesktop.systemd1.Unit";

/// A new connection to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard
/// socket).
pub async fn connect() -> zbus::Result<Connection> {
    Connection::system().await
}

/// Asks systemd to send its signals (unit and job changes) to this connection. Already
/// subscribed is no error.
pub async fn subscribe(conn: &Connection) -> zbus::Result<()> {
    match conn
        .call_method(Some(DEST), PATH, Some(MANAGER), "Subscribe", &())
        .await
    {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The signals systemd sends (member `None`: all of them), queued up to `max`.
pub async fn signals(
    conn: &Connection,
    member: Option<&'static str>,
    max: usize,
) -> zbus::Result<MessageStream> {
    let mut rule = MatchRule::builder().msg_type(Type::Signal).sender(DEST)?;
    if let Some(m) = member {
        rule = rule.interface(MANAGER)?.member(m)?;
    }
    MessageStream::for_match_rule(rule.build(), conn, Some(max)).await
}

/// The bus's own word that systemd's name changed hands (systemd re-executing).
pub async fn owner_changes(conn: &Connection) -> zbus::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameOwnerChanged")?
        .add_arg(DEST)?
        .build();
    MessageStream::for_match_rule(rule, conn, Some(64)).await
}

/// Where a message stands in what one sender sent: its unique bus name and the
/// message's serial number, which grows with each message that sender sends (and D-Bus
/// delivers one sender's messages in order).
pub type Place = (String, u32);

/// Where `m` stands among its sender's messages.
pub fn place(m: &zbus::Message) -> Place {
    let header = m.header();
    let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
    (sender, m.primary_header().serial_num().get())
}

/// Every property of one interface of an object of systemd's, and where systemd's answer
/// stands among its messages (signals it sent before are older than these values).
pub async fn get_all(
    conn: &Connection,
    path: &str,
    interface: &str,
) -> zbus::Result<(HashMap<String, OwnedValue>, Place)> {
    let reply = conn
        .call_method(
            Some(DEST),
            path,
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &(interface,),
        )
        .await?;
    Ok((reply.body().deserialize()?, place(&reply)))
}
