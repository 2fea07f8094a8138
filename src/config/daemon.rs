//! `[daemon]`: where hark keeps its state, its control socket and HTTP listener, its
//! host name, how many actions run at once, how long a stop waits.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::diagnostic::ConfigError;
use super::parse::Collected;
use super::table::deserialize_table;
use super::values;
use super::{Ctx, DaemonConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<String>,
    host: Option<String>,
    control_socket: Option<String>,
    control_group: Option<Spanned<String>>,
    /// Where the HTTP listener is (an address, or the table `[daemon.http]`, read by
    /// `listener.rs`): taken out before the rest is read.
    #[serde(skip)]
    http: Option<()>,
    /// `http`'s older name.
    metrics: Option<Spanned<String>>,
    /// Names besides loopback ones that a loopback listener answers to (`Host`).
    http_hosts: Option<Vec<Spanned<String>>>,
    max_concurrent_actions: Option<Spanned<i64>>,
    stop_timeout: Option<Spanned<String>>,
    /// Where people reach the status page: the link in notifications.
    url: Option<Spanned<String>>,
}

/// `[daemon]`: at most one, in any file.
pub(super) fn parse_daemon(
    ctx: &mut Ctx,
    all: &mut Collected,
    key_span: Range<usize>,
    value: &Spanned<DeValue<'_>>,
) {
    let DeValue::Table(table) = value.get_ref() else {
        ctx.error(value.span(), "`daemon` must be a table");
        return;
    };
    let here = ctx.loc(key_span);
    if let Some((first, _)) = &all.daemon {
        let msg = format!(
            "[daemon] is defined twice: first at {}, again here",
            first.display()
        );
        ctx.errors.push(ConfigError::at(here, msg));
        return;
    }
    let mut table = table.clone();
    let http = table.remove("http");
    let Some(raw) = deserialize_table::<RawDaemon>(ctx, table, value.span()) else {
        return;
    };
    let _ = raw.http;
    let mut daemon = DaemonConfig::default();
    // Paths are relative to the file that names them, like every path in the config.
    let base = ctx.config_dir();
    if let Some(d) = raw.state_dir {
        daemon.state_dir = super::file::normalize(&base.join(d));
    }
    if let Some(s) = raw.control_socket {
        daemon.control_socket = super::file::normalize(&base.join(s));
    }
    if let Some(g) = &raw.control_group {
        daemon.control_group = super::account::lookup(ctx, g, super::account::Kind::Group);
    }
    if let Some(h) = raw.host {
        daemon.host = h;
    }
    if let (Some(_), Some(old)) = (&http, &raw.metrics) {
        ctx.error(
            old.span(),
            "`metrics` is the older name of `http`: give one of them",
        );
    }
    if let Some((addr, listener)) = http.and_then(|h| super::listener::parse(ctx, &h)) {
        daemon.metrics = Some(addr);
        daemon.listener = listener;
    } else if let Some(m) = raw.metrics {
        match m.get_ref().parse() {
            Ok(addr) => daemon.metrics = Some(addr),
            Err(e) => ctx.error(
                m.span(),
                format!(
                    "invalid HTTP address {:?}: {e} (write it like \"127.0.0.1:9797\")",
                    m.get_ref()
                ),
            ),
        }
    }
    for h in raw.http_hosts.iter().flatten() {
        let name = h.get_ref().trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(['/', ' ', '@']) {
            ctx.error(
                h.span(),
                "a host name as a browser sends it in `Host`, like \"status.example.org\"",
            );
        } else {
            daemon.http_hosts.push(name);
        }
    }
    if let Some(n) = raw.max_concurrent_actions {
        match usize::try_from(*n.get_ref()) {
            Ok(v) if v >= 1 => daemon.max_concurrent_actions = v,
            _ => ctx.error(n.span(), "max_concurrent_actions must be at least 1"),
        }
    }
    if let Some(d) = values::optional_duration(ctx, &raw.stop_timeout) {
        daemon.stop_timeout = d;
    }
    if let Some(u) = &raw.url {
        let text = u.get_ref().trim();
        match reqwest::Url::parse(text) {
            Ok(p) if matches!(p.scheme(), "http" | "https") => daemon.url = Some(text.to_string()),
            _ => ctx.error(
                u.span(),
                "`url` is where people reach the status page: an http:// or https:// URL",
            ),
        }
    }
    all.daemon = Some((here, daemon));
}

/// Where `hark status` looks when no configuration says otherwise (systemd's
/// `RuntimeDirectory=hark`).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/hark/control.sock";

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: PathBuf::from("/var/lib/hark"),
            host: local_hostname(),
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            control_group: None,
            metrics: None,
            listener: Default::default(),
            url: None,
            http_hosts: Vec::new(),
            max_concurrent_actions: 16,
            stop_timeout: Duration::from_secs(10),
        }
    }
}

pub fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and we read only up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
