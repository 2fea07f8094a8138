//! What the process needs before the library runs: the async runtime, the open-files
//! limit, and logging (journald under systemd, stderr otherwise).

use std::io::IsTerminal;
use std::process::ExitCode;

/// One thread runs the engine, the checks and the actions' I/O; blocking work (file
/// watches, stat, scans, the state store) has threads of its own. It keeps the idle
/// footprint small.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
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
pub fn raise_fd_limit() {
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

/// Under systemd (stderr is the journal stream systemd named in `JOURNAL_STREAM`), logs
/// go to journald through its native protocol, each field its own journal field (`RULE`,
/// `WATCH`, `ACTION`, `KIND`, ...). Otherwise, and if the journal cannot be reached,
/// human-readable lines go to stderr.
pub fn init_logging() {
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
