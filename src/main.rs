//! The `hark` command line: flags, logging, exit codes. Everything else is the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hark::config::Config;

#[derive(Parser)]
#[command(
    name = "hark",
    version,
    about = "A monitoring and event-trigger daemon: watches (files, logs, the journal, systemd units, processes, HTTP, TCP, system, commands), rules in CEL, actions (shell, systemd, webhook, Alertmanager, email, AMQP, MQTT, NATS)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum OutboxCommand {
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
enum Command {
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
struct SocketArgs {
    /// The control socket (default: [daemon] control_socket of the configuration, else
    /// /run/hark/control.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The configuration whose [daemon] control_socket to use.
    #[arg(short = 'c', long = "config", value_name = "PATH")]
    config: Vec<PathBuf>,
}

impl SocketArgs {
    fn path(&self) -> PathBuf {
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

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Exit code when the daemon cannot be reached.
const UNREACHABLE: u8 = 3;

fn ask(
    socket: &SocketArgs,
    request: hark::control::Request,
) -> Result<hark::control::Response, ExitCode> {
    hark::control::call(&socket.path(), &request).map_err(|e| {
        eprintln!("hark: {e}");
        ExitCode::from(UNREACHABLE)
    })
}

/// Prints a silence/unsilence answer: its message, or its error (exit 1).
fn print_answer(r: hark::control::Response) -> ExitCode {
    match (r.error, r.message) {
        (Some(e), _) => {
            eprintln!("hark: {e}");
            ExitCode::from(1)
        }
        (None, m) => {
            println!("{}", m.unwrap_or_default());
            ExitCode::SUCCESS
        }
    }
}

fn main() -> ExitCode {
    // One malloc arena for every thread: glibc gives each thread that allocates an arena
    // of its own, whose freed memory stays with it; hark's threads mostly wait, and one
    // arena kept 0.5 MiB less in an idle daemon, with no loss in the log intake
    // benchmark (docs/benchmarks.md, idle footprint).
    // SAFETY: mallopt before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A client command whose reader went away (`hark tail | head`) ends quietly, as
        // other tools do, instead of panicking on the broken pipe. The daemon keeps
        // ignoring SIGPIPE: a client that hangs up is an error on that socket only.
        // SAFETY: resets one signal's disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Validate { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                print_errors(&errors);
                ExitCode::from(1)
            }
        },
        Command::Test {
            config,
            event,
            execute,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    print_errors(&errors);
                    return ExitCode::from(1);
                }
            };
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            let events = match event {
                Some(spec) => match hark::dry_run::parse_event(&config, &spec) {
                    Ok(e) => vec![e],
                    Err(e) => {
                        eprintln!("hark: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => match runtime.block_on(hark::dry_run::sample_all(&config)) {
                    Ok((events, notes)) => {
                        for n in notes {
                            println!("{n}");
                        }
                        events
                    }
                    Err(e) => {
                        eprintln!("hark: {e:#}");
                        return ExitCode::from(1);
                    }
                },
            };
            let (text, firings) = hark::dry_run::report(&config, events);
            print!("{text}");
            if execute {
                init_logging();
                println!("executing the actions of {} firing(s)", firings.len());
                runtime.block_on(hark::dry_run::execute(&config, firings));
            }
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hark", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            let written = match dir {
                Some(d) => clap_mangen::generate_to(Cli::command(), d),
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hark: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Status { json, socket } => {
            let r = match ask(&socket, hark::control::Request::Status) {
                Ok(r) => r,
                Err(code) => return code,
            };
            match (r.status, r.error) {
                (Some(st), _) if json => {
                    println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                (Some(st), _) => {
                    print!("{}", hark::control::render(&st));
                    ExitCode::SUCCESS
                }
                (None, e) => {
                    eprintln!(
                        "hark: {}",
                        e.unwrap_or_else(|| "no status in the answer".into())
                    );
                    ExitCode::from(1)
                }
            }
        }
        Command::Silence {
            rule,
            duration,
            socket,
        } => match ask(
            &socket,
            hark::control::Request::Silence {
                rule,
                for_secs: duration.map(|d| d.as_secs().max(1)),
            },
        ) {
            Ok(r) => print_answer(r),
            Err(code) => code,
        },
        Command::Unsilence { rule, socket } => {
            match ask(&socket, hark::control::Request::Unsilence { rule }) {
                Ok(r) => print_answer(r),
                Err(code) => code,
            }
        }
        Command::Tail {
            watch,
            rule,
            json,
            socket,
        } => tail(&socket, hark::control::Request::Tail { watch, rule }, json),
        Command::Explain { rule, json, socket } => {
            let r = match ask(&socket, hark::control::Request::Explain { rule }) {
                Ok(r) => r,
                Err(code) => return code,
            };
            match (r.explain, r.error) {
                (Some(e), _) if json => {
                    println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                (Some(e), _) => {
                    print!("{e}");
                    ExitCode::SUCCESS
                }
                (None, e) => {
                    eprintln!("hark: {}", e.unwrap_or_else(|| "no answer".into()));
                    ExitCode::from(1)
                }
            }
        }
        Command::Outbox { what, json, socket } => {
            let (socket, request) = match what {
                None => (socket, hark::control::Request::Outbox),
                Some(OutboxCommand::Retry { id, socket, .. }) => {
                    (socket, hark::control::Request::OutboxRetry { id })
                }
                Some(OutboxCommand::Drop { id, socket }) => {
                    (socket, hark::control::Request::OutboxDrop { id })
                }
            };
            let listing = matches!(request, hark::control::Request::Outbox);
            let r = match ask(&socket, request) {
                Ok(r) => r,
                Err(code) => return code,
            };
            if !listing || r.error.is_some() {
                return print_answer(r);
            }
            let list = r.outbox.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                print!("{}", hark::control::render_outbox(&list));
            }
            ExitCode::SUCCESS
        }
        Command::Run { config: paths } => {
            init_logging();
            raise_fd_limit();
            let config = match Config::load(&paths) {
                Ok(c) => c,
                Err(errors) => {
                    print_errors(&errors);
                    return ExitCode::from(1);
                }
            };
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(hark::daemon::run_until_signalled(config, paths)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("hark: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `hark tail`: prints each trace line as it comes, flushed, until the daemon stops or
/// stdout is closed (`hark tail | head`).
fn tail(socket: &SocketArgs, request: hark::control::Request, json: bool) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let mut text = hark::control::TailText::default();
    let streamed = hark::control::tail(&socket.path(), &request, |line| {
        let shown = if json {
            Some(serde_json::to_string(&line).unwrap_or_default())
        } else {
            text.line(&line)
        };
        match shown {
            Some(t) => writeln!(out, "{t}").and_then(|_| out.flush()).is_ok(),
            None => true,
        }
    });
    match streamed {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("hark: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("hark: {e}");
            ExitCode::from(UNREACHABLE)
        }
    }
}

/// One thread runs the engine, the checks and the actions' I/O; blocking work (file
/// watches, stat, scans, the state store) has threads of its own. It keeps the idle
/// footprint small.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Periodic blocking work (a /proc pass, a system sample) reuses its thread
        // instead of starting a new one each time.
        .thread_keep_alive(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| {
            eprintln!("hark: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// Every followed process holds a pidfd and every watched file an inotify watch: lift
/// the soft limit on open files to the hard one, as a daemon that follows thousands of
/// processes needs (systemd's default hard limit is 524288; the soft one 1024).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass; nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-files limit");
            }
        }
    }
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` is
/// `DEVICE:INODE` of it (a child that inherited the variable but not the stream is not).
fn stderr_is_the_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills the struct we own; fd 2 may be closed, which it reports.
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

fn print_errors(errors: &hark::config::ConfigErrors) {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    let n = errors.0.len();
    eprintln!("{n} error{} found", if n == 1 { "" } else { "s" });
}

/// Under systemd (stderr is the journal stream systemd named in `JOURNAL_STREAM`), logs
/// go to journald through its native protocol, each field its own journal field (`RULE`,
/// `WATCH`, `ACTION`, `KIND`, ...). Otherwise, and if the journal cannot be reached,
/// human-readable lines go to stderr.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    // The broker clients log each broken connection at ERROR on their own; hark already
    // says, once per attempt, what failed and when it tries again.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,lapin=off,async_nats=warn,rumqttc=warn"));
    if stderr_is_the_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("hark".into());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal)
                    .init();
                return;
            }
            Err(e) => eprintln!("hark: cannot log to journald ({e}); logging to stderr"),
        }
    }
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .init();
}
