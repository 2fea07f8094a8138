//! The `hark` command line: flags, logging, exit codes. Everything else is the library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hark::config::Config;
use hark::control::{client, Request};

use cli::args::{Cli, Command, OutboxCommand};
use cli::setup::{init_logging, raise_fd_limit, runtime};

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
    let exit = |e: client::Exit| ExitCode::from(e.code());
    match cli.command {
        Command::Run { config } => run(config),
        Command::Validate { config } => validate(&config),
        Command::Test {
            config,
            event,
            execute,
        } => test(&config, event, execute),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hark", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(dir),
        Command::Status { json, socket } => exit(client::status(&socket.path(), json)),
        Command::Explain { rule, json, socket } => {
            exit(client::explain(&socket.path(), rule, json))
        }
        Command::Silence {
            rule,
            duration,
            comment,
            socket,
        } => {
            let for_secs = duration.map(|d| d.as_secs().max(1));
            exit(client::command(
                &socket.path(),
                Request::Silence {
                    rule,
                    for_secs,
                    comment,
                },
            ))
        }
        Command::Unsilence { rule, socket } => {
            exit(client::command(&socket.path(), Request::Unsilence { rule }))
        }
        Command::Tail {
            watch,
            rule,
            json,
            socket,
        } => exit(client::follow(
            &socket.path(),
            Request::Tail { watch, rule },
            json,
        )),
        Command::Ping {
            name,
            start,
            fail,
            exit: code,
            command,
            socket,
        } => {
            let socket = socket.path();
            if command.is_empty() {
                exit(cli::ping::once(
                    &socket,
                    &name,
                    cli::ping::Kind::of(start, fail, code),
                ))
            } else {
                ExitCode::from(cli::ping::wrap(&socket, &name, &command))
            }
        }
        Command::Outbox { what, json, socket } => exit(match what {
            None => client::outbox(&socket.path(), json),
            Some(OutboxCommand::Retry { id, socket, .. }) => {
                client::command(&socket.path(), Request::OutboxRetry { id })
            }
            Some(OutboxCommand::Drop { id, socket }) => {
                client::command(&socket.path(), Request::OutboxDrop { id })
            }
        }),
    }
}

/// Loads the configuration, or prints every error it has.
fn load(paths: &[PathBuf]) -> Result<Config, ExitCode> {
    Config::load(paths).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        let n = errors.0.len();
        eprintln!("{n} error{} found", if n == 1 { "" } else { "s" });
        ExitCode::from(1)
    })
}

/// `hark run`: the daemon, in the foreground, until SIGTERM or SIGINT.
fn run(paths: Vec<PathBuf>) -> ExitCode {
    init_logging();
    raise_fd_limit();
    let config = match load(&paths) {
        Ok(c) => c,
        Err(code) => return code,
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

/// `hark validate`: every error, or a summary of what the configuration holds.
fn validate(paths: &[PathBuf]) -> ExitCode {
    match load(paths) {
        Ok(c) => {
            println!("{}", c.summary());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `hark test`: each rule's verdict on one sample of every watch (or on `--event`), and
/// the actions it would run; with `--execute`, runs them.
fn test(paths: &[PathBuf], event: Option<String>, execute: bool) -> ExitCode {
    let config = match load(paths) {
        Ok(c) => c,
        Err(code) => return code,
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

/// `hark man`: the man pages, into `dir` or to stdout.
fn man(dir: Option<PathBuf>) -> ExitCode {
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
