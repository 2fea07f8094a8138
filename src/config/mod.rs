//! Configuration: load TOML files, parse with spans, validate everything, report every
//! error as `FILE:LINE:COL: error: MESSAGE`. Config is data; it starts nothing.

mod account;
mod action;
mod alertmanager;
mod broker;
mod certificate;
mod checks;
mod condition;
mod container;
mod daemon;
pub mod diagnostic;
mod dns;
mod email;
mod expect;
mod field_check;
mod fields;
mod file;
mod files;
mod http;
mod journal;
mod listener;
mod log;
mod maintenance;
mod notify;
mod parse;
mod ping;
mod push;
mod resolve;
mod rule;
mod rule_values;
mod secret;
mod suggest;
mod systemd;
mod table;
mod tls;
mod token;
mod unit;
mod values;
mod watch;
mod webhook;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use account::Account;
pub use action::{
    template_env, ActionConfig, ActionKind, ShellAction, ShellProgram, TEMPLATE_FUEL,
    TEMPLATE_MAX_OUTPUT,
};
pub use alertmanager::AlertmanagerAction;
pub use broker::{is_tls as is_broker_tls, BrokerAction, Protocol};
pub use certificate::{CertificateSource, CertificateWatch, Starttls};
pub use checks::{CommandWatch, ProcessWatch, SystemWatch, TcpWatch};
pub use condition::{
    compile as compile_condition, env as cel_env, Condition, MAX_DEPTH as MAX_CONDITION_DEPTH,
};
pub use container::{ContainerWatch, KINDS as CONTAINER_KINDS};
pub use daemon::{local_hostname, DEFAULT_CONTROL_SOCKET};
pub use diagnostic::{ConfigError, ConfigErrors, Location, SourceFile};
pub use dns::DnsWatch;
pub use email::{EmailAction, Security, SmtpServer};
pub use expect::{show_in, Expect, Expectation, Schedule};
pub use file::{FileEvents, FileWatch, PathPattern};
pub use files::{config_files, DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_FILE};
pub use http::HttpWatch;
pub use journal::JournalWatch;
pub use listener::{ListenerConfig, Open, ServerTls};
pub use log::LogWatch;
pub use maintenance::{Maintenance, Window};
pub use notify::{NotifyAction, Service};
pub use ping::PingWatch;
pub use push::PushWatch;
pub use rule::{RuleConfig, Threshold, TriggerLimit};
pub use secret::Secret;
pub use systemd::{SystemdAction, Verb};
pub use tls::{pem_certificates, Ca, TlsOptions};
pub use token::{Scopes, TokenConfig};
pub use unit::UnitWatch;
pub use watch::{HeartbeatWatch, WatchConfig, WatchKind};
pub use webhook::{Payload, WebhookAction};

/// A whole, validated configuration.
#[derive(Debug)]
pub struct Config {
    pub files: Vec<PathBuf>,
    pub daemon: DaemonConfig,
    pub watches: BTreeMap<String, WatchConfig>,
    pub rules: BTreeMap<String, RuleConfig>,
    pub actions: BTreeMap<String, ActionConfig>,
    /// `[token.NAME]`: who may use the HTTP listener's API and pushes.
    pub tokens: BTreeMap<String, TokenConfig>,
    /// `[maintenance.NAME]`: planned quiet.
    pub maintenance: BTreeMap<String, Maintenance>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub host: String,
    pub control_socket: PathBuf,
    /// Members may use the control socket too (root always can).
    pub control_group: Option<Account>,
    pub metrics: Option<std::net::SocketAddr>,
    /// The listener's TLS, users and what it opens to anyone.
    pub listener: ListenerConfig,
    /// Names a loopback listener answers to besides loopback names and addresses (a
    /// reverse proxy's public name); any other `Host` is refused (DNS rebinding).
    pub http_hosts: Vec<String>,
    pub max_concurrent_actions: usize,
    /// How long running actions may go on after SIGTERM before they are killed.
    pub stop_timeout: Duration,
    /// The status page's address as people reach it (the link in notifications).
    pub url: Option<String>,
}

impl Config {
    /// Loads every file that `paths` names (files, or directories of `*.toml`), or the
    /// defaults when `paths` is empty, and checks everything a run would.
    pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
        on_loading_stack(|| {
            let files = files::config_files(paths).map_err(|e| ConfigErrors(vec![e]))?;
            parse::parse_all(&files)
        })
    }

    /// Parses and checks one document given as text, as if it were the file `path` (which
    /// is not read). Paths in it are relative to `path`'s directory.
    pub fn from_text(path: &std::path::Path, text: &str) -> Result<Config, ConfigErrors> {
        on_loading_stack(|| parse::parse_text(path, text))
    }

    /// The one-line summary `hark validate` prints.
    pub fn summary(&self) -> String {
        format!(
            "configuration ok: {} file{}, {} watch{}, {} rule{}, {} action{}",
            self.files.len(),
            plural(self.files.len(), "s"),
            self.watches.len(),
            plural(self.watches.len(), "es"),
            self.rules.len(),
            plural(self.rules.len(), "s"),
            self.actions.len(),
            plural(self.actions.len(), "s"),
        )
    }
}

/// The stack loading runs on, whoever asks (`validate` on the main thread, a reload on a
/// blocking-pool thread of 2 MiB): the CEL and TOML parsers recurse on what they are
/// given, and what `validate` accepts must load the same everywhere. Reserved, not used:
/// only the pages a deep parse touches are ever committed.
const LOADING_STACK: usize = 256 << 20;

fn on_loading_stack(
    load: impl FnOnce() -> Result<Config, ConfigErrors> + Send,
) -> Result<Config, ConfigErrors> {
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("hark-config".into())
            .stack_size(LOADING_STACK)
            .spawn_scoped(s, load);
        match thread {
            Ok(t) => t
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(ConfigErrors(vec![ConfigError::in_file(
                Path::new("-"),
                format!("cannot start a thread to load the configuration: {e}"),
            )])),
        }
    })
}

fn plural(n: usize, suffix: &'static str) -> &'static str {
    if n == 1 {
        ""
    } else {
        suffix
    }
}

/// The parsing context of one file: where errors go and what they point at.
pub(crate) struct Ctx {
    pub file: Arc<SourceFile>,
    pub errors: Vec<ConfigError>,
    /// Keys of the table read last that were taken out for an error of their own: a
    /// check that they are missing would only repeat it.
    pub taken_out: Vec<String>,
    /// Cron expressions read so far, shared by the rules that repeat one.
    pub crons: expect::Crons,
}

impl Ctx {
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at(Location::new(&self.file, span), message));
    }

    pub fn loc(&self, span: Range<usize>) -> Location {
        Location::new(&self.file, span)
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// The absolute directory of the file being parsed: paths in it are relative to it,
    /// not to wherever hark was started. `hark.toml` given bare is in the current
    /// directory (its parent, `""`, is no directory at all).
    pub fn config_dir(&self) -> PathBuf {
        let file = std::path::absolute(self.path()).unwrap_or_else(|_| self.path().to_path_buf());
        file.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    }
}
