//! The command line's flags and subcommands (clap derive); `hark --help`, the man page
//! and the shell completions come from here.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hark::config::Config;

#[derive(Parser)]
#[command(
    name = "hark",
    version,
    about = "A monitoring and event-trigger daemon: watches (files, logs, the journal, systemd units, processes, HTTP, TCP, system, commands), rules in CEL, actions (shell, systemd, webhook, Alertmanager, email, AMQP, MQTT, NATS)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum OutboxCommand {
    /// Try a failed delivery again from its first attempt (same idempotency key).
    Retry {
        /// The delivery's id (`hark outbox` lists them).
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        id: Option<u64>,
        /// Every failed delivery.
        #[arg(long)]
        failed: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Drop a delivery, failed or pending: it is not attempted again.
    Drop {
        /// The delivery's id (`hark outbox` lists them).
        id: u64,
        #[command(flatten)]
        socket: SocketArgs,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// A TOML file, or a directory whose *.toml files are all loaded (sorted by name).
        /// Default: /etc/hark/hark.toml and /etc/hark/rules.d/*.toml.
        #[arg(short = 'c', long = "config", value_name = "PATH")]
        config: Vec<PathBuf>,
    },
    /// Check the configuration without starting anything.
    Validate {
        /// A TOML file, or a directory whose *.toml files are all loaded (sorted by name);
        /// may be given more than once. Default: /etc/hark/hark.toml and
        /// /etc/hark/rules.d/*.toml.
        #[arg(short = 'c', long = "config", value_name = "PATH")]
        config: Vec<PathBuf>,
    },
    /// Dry run: sample every watch once (or take --event), show each rule's verdict and
    /// the actions it would run, rendered. Executes nothing unless --execute.
    Test {
        /// A TOML file, or a directory whose *.toml files are all loaded (sorted by name);
        /// may be given more than once. Default: /etc/hark/hark.toml and
        /// /etc/hark/rules.d/*.toml.
        #[arg(short = 'c', long = "config", value_name = "PATH")]
        config: Vec<PathBuf>,
        /// A synthetic event instead of sampling: 'WATCH key=value ...' (values are read
        /// as JSON when they parse, e.g. status=503 ok=true; json.status=up nests).
        #[arg(long, value_name = "'WATCH key=value ...'")]
        event: Option<String>,
        /// Run the actions of the rules that fire on this event, for real.
        #[arg(long)]
        execute: bool,
    },
    /// Ask the running daemon what it is doing: watches, rules, actions, outbox, last
    /// reload. Exit 3 when the daemon cannot be reached.
    Status {
        /// The whole status as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Mute a rule's actions (maintenance); kept across restarts. A resolve is still sent.
    Silence {
        /// The rule to mute (its name in the configuration).
        rule: String,
        /// How long, e.g. 2h (default: until `hark unsilence`).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// Why (shown with the silence in `hark status`).
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// End a silence.
    Unsilence {
        /// The rule to let speak again.
        rule: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Stream, live from the running daemon, every event as it arrives, each rule's
    /// verdict on it and each action's outcome, until interrupted or the daemon stops. A
    /// client that reads too slowly loses lines and is told how many.
    Tail {
        /// Only this watch's events, verdicts and actions.
        #[arg(long, value_name = "WATCH")]
        watch: Option<String>,
        /// Only this rule's verdicts and actions, and the events of its watches.
        #[arg(long, value_name = "RULE")]
        rule: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Why a rule is in its state: its condition with each sub-expression's value on the
    /// last events it saw, its counters and timers, silence, `unless`, its last actions.
    Explain {
        /// The rule to explain (its name in the configuration).
        rule: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// What the outbox holds: pending and failed deliveries (webhooks, Alertmanager,
    /// brokers); `retry` and `drop` act on them.
    Outbox {
        #[command(subcommand)]
        what: Option<OutboxCommand>,
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Tell a heartbeat watch a job is alive: a success (or --start, --fail, --exit CODE);
    /// with `-- COMMAND ARGS...`, run the command between a start and its end (exit
    /// status, duration and the last 4 KiB of its output as fields) and exit with its
    /// status.
    Ping {
        /// The heartbeat watch (`type = "heartbeat"`).
        name: String,
        /// The job starts.
        #[arg(long, conflicts_with_all = ["fail", "exit"])]
        start: bool,
        /// The job failed.
        #[arg(long, conflicts_with = "exit")]
        fail: bool,
        /// The job ended with this exit status (0: success, else a failure).
        #[arg(long, value_name = "CODE")]
        exit: Option<i32>,
        /// The job to run and report on.
        #[arg(last = true, value_name = "COMMAND", conflicts_with_all = ["start", "fail", "exit"])]
        command: Vec<std::ffi::OsString>,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write the pages of hark and each command to DIR.
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Where the daemon's control socket is.
#[derive(clap::Args)]
pub struct SocketArgs {
    /// The control socket (default: [daemon] control_socket of the configuration, else
    /// /run/hark/control.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The configuration whose [daemon] control_socket to use.
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    config: Vec<PathBuf>,
}

impl SocketArgs {
    pub fn path(&self) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        // A configuration that does not load (a bad edit awaiting its reload) still
        // leaves the daemon reachable at the default place.
        match Config::load(&self.config) {
            Ok(c) => c.daemon.control_socket,
            Err(_) => PathBuf::from(hark::config::DEFAULT_CONTROL_SOCKET),
        }
    }
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}
