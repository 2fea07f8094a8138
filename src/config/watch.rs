//! `[watch.NAME]`: read the `type` first, then the struct of that type, so an error points
//! at the offending key or value instead of at the whole table.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::checks::{self, CommandWatch, ProcessWatch, SystemWatch, TcpWatch};
use super::file::FileWatch;
use super::http::HttpWatch;
use super::Ctx;

#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub name: String,
    pub kind: WatchKind,
    /// The watch's TOML, normalised: a reload restarts the watch only when it changed.
    pub definition: String,
}

/// The closed set of watch types; one struct per type.
#[derive(Debug, Clone)]
pub enum WatchKind {
    File(FileWatch),
    Http(HttpWatch),
    Process(ProcessWatch),
    System(SystemWatch),
    Tcp(TcpWatch),
    Command(CommandWatch),
    Log(super::log::LogWatch),
    Journal(super::journal::JournalWatch),
    Unit(super::unit::UnitWatch),
    /// Events sent by `hark ping` over the control socket.
    Heartbeat(HeartbeatWatch),
    /// Events sent over HTTP to `/push/NAME`.
    Push(super::push::PushWatch),
    Dns(super::dns::DnsWatch),
    Ping(super::ping::PingWatch),
    Certificate(super::certificate::CertificateWatch),
    Container(super::container::ContainerWatch),
}

impl WatchKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchKind::File(_) => "file",
            WatchKind::Http(_) => "http",
            WatchKind::Process(_) => "process",
            WatchKind::System(_) => "system",
            WatchKind::Tcp(_) => "tcp",
            WatchKind::Command(_) => "command",
            WatchKind::Log(_) => "log",
            WatchKind::Journal(_) => "journal",
            WatchKind::Unit(_) => "unit",
            WatchKind::Heartbeat(_) => "heartbeat",
            WatchKind::Push(_) => "push",
            WatchKind::Dns(_) => "dns",
            WatchKind::Ping(_) => "ping",
            WatchKind::Certificate(_) => "certificate",
            WatchKind::Container(_) => "container",
        }
    }

    /// How often it checks, for the watches that check on an interval.
    pub fn every(&self) -> Option<std::time::Duration> {
        match self {
            WatchKind::Http(w) => Some(w.every),
            WatchKind::Process(w) => Some(w.every),
            WatchKind::System(w) => Some(w.every),
            WatchKind::Tcp(w) => Some(w.every),
            WatchKind::Command(w) => Some(w.every),
            WatchKind::Dns(w) => Some(w.every),
            WatchKind::Ping(w) => Some(w.every),
            WatchKind::Certificate(w) => Some(w.every),
            _ => None,
        }
    }

    /// Whether some of its events are states (a check's latest result) that drive a
    /// rule's state machine, rather than edges that fire on each match. A process watch
    /// reports both: `start` and `exit` are edges, `sample` a state.
    pub fn reports_states(&self) -> bool {
        !matches!(
            self,
            WatchKind::File(_)
                | WatchKind::Log(_)
                | WatchKind::Journal(_)
                | WatchKind::Heartbeat(_)
                | WatchKind::Push(_)
                | WatchKind::Container(_)
        )
    }

    /// Whether its events come as a stream that can flood (lines, file changes, journal
    /// entries): they wait in their own queue, judged after the others'.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            WatchKind::File(_) | WatchKind::Log(_) | WatchKind::Journal(_)
        )
    }

    /// Whether some of its events are edges (a change, a line, a process start).
    pub fn reports_edges(&self) -> bool {
        matches!(
            self,
            WatchKind::File(_)
                | WatchKind::Log(_)
                | WatchKind::Journal(_)
                | WatchKind::Process(_)
                | WatchKind::Heartbeat(_)
                | WatchKind::Push(_)
                | WatchKind::Container(_)
        )
    }

    /// Whether an event of this watch with this `kind` is an edge (fires on each match)
    /// rather than a state.
    pub fn is_edge(&self, kind: Option<&str>) -> bool {
        match self {
            WatchKind::File(_) | WatchKind::Log(_) | WatchKind::Journal(_) => true,
            WatchKind::Heartbeat(_) | WatchKind::Push(_) | WatchKind::Container(_) => true,
            WatchKind::Process(_) => kind != Some("sample"),
            WatchKind::Unit(_) => kind == Some("disconnected"),
            _ => false,
        }
    }
}

const AVAILABLE: &str =
    "file, log, journal, unit, http, process, system, tcp, command, dns, ping, certificate, container, heartbeat, push";

pub(crate) fn parse(
    ctx: &mut Ctx,
    name: &str,
    mut table: DeTable<'_>,
    span: Range<usize>,
) -> Option<WatchConfig> {
    let Some((_, type_value)) = table.remove_entry("type") else {
        ctx.error(
            span,
            format!("watch `{name}` has no `type` (one of: {AVAILABLE})"),
        );
        return None;
    };
    let DeValue::String(ty) = type_value.get_ref() else {
        ctx.error(type_value.span(), "`type` must be a string");
        return None;
    };
    let kind = match ty.as_ref() {
        "file" => WatchKind::File(super::file::parse(ctx, table, span)?),
        "http" => WatchKind::Http(super::http::parse(ctx, table, span)?),
        "process" => WatchKind::Process(checks::parse_process(ctx, table, span)?),
        "system" => WatchKind::System(checks::parse_system(ctx, table, span)?),
        "tcp" => WatchKind::Tcp(checks::parse_tcp(ctx, table, span)?),
        "command" => WatchKind::Command(checks::parse_command(ctx, table, span)?),
        "log" => WatchKind::Log(super::log::parse(ctx, table, span)?),
        "journal" => WatchKind::Journal(super::journal::parse(ctx, table, span)?),
        "unit" => WatchKind::Unit(super::unit::parse(ctx, table, span)?),
        "heartbeat" => {
            let _: HeartbeatWatch = super::table::deserialize_table(ctx, table, span)?;
            WatchKind::Heartbeat(HeartbeatWatch {})
        }
        "push" => WatchKind::Push(super::push::parse(ctx, table, span)?),
        "dns" => WatchKind::Dns(super::dns::parse(ctx, table, span)?),
        "ping" => WatchKind::Ping(super::ping::parse(ctx, table, span)?),
        "certificate" => WatchKind::Certificate(super::certificate::parse(ctx, table, span)?),
        "container" => WatchKind::Container(super::container::parse(ctx, table, span)?),
        t => {
            ctx.error(
                type_value.span(),
                format!("unknown watch type `{t}` (expected one of: {AVAILABLE})"),
            );
            return None;
        }
    };
    Some(WatchConfig {
        definition: String::new(),
        name: name.to_string(),
        kind,
    })
}

/// A heartbeat watch: it has no keys; its events come from `hark ping NAME`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatWatch {}
