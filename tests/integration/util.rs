//! Starting `hark` with a config in a temp dir and waiting for what it does.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HARK: &str = env!("CARGO_BIN_EXE_hark");

/// A running daemon; killed when dropped.
pub struct Hark {
    pub child: Child,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    /// How it was started: each restart starts it the same way.
    how: How,
    /// When it sent WATCHDOG=1, with [`Start::watchdog`].
    pings: Arc<Mutex<Vec<Instant>>>,
}

/// How to start the daemon, beside its config: limits, the watchdog, the log level.
#[derive(Clone)]
struct How {
    prepare: fn(&mut Command),
    watchdog: Option<Duration>,
    rust_log: Option<String>,
}

/// Starts `hark run` as a test wants it: `Start::new(config).dir(..).watchdog(..).run()`.
pub struct Start {
    config: String,
    dir: Option<tempfile::TempDir>,
    how: How,
}

impl Start {
    /// `config`, with `@DIR@` replaced by the temp dir (a state dir and control socket of
    /// its own added unless it names them).
    pub fn new(config: &str) -> Start {
        Start {
            config: config.to_string(),
            dir: None,
            how: How {
                prepare: |_| {},
                watchdog: None,
                rust_log: None,
            },
        }
    }

    /// In this temp dir (files the config names may be there already).
    pub fn dir(mut self, dir: tempfile::TempDir) -> Start {
        self.dir = Some(dir);
        self
    }

    /// Applied to the command at each start (limits, a user).
    pub fn prepare(mut self, f: fn(&mut Command)) -> Start {
        self.how.prepare = f;
        self
    }

    /// With systemd's watchdog at `every` (`WATCHDOG_USEC`): each WATCHDOG=1 is recorded
    /// (see [`Hark::pings`]).
    pub fn watchdog(mut self, every: Duration) -> Start {
        self.how.watchdog = Some(every);
        self
    }

    /// `RUST_LOG` of the daemon (default: `HARK_TEST_RUST_LOG`, else `info`).
    pub fn log_level(mut self, level: &str) -> Start {
        self.how.rust_log = Some(level.to_string());
        self
    }

    /// Writes the config and starts the daemon, returning once it has sent READY=1.
    pub fn run(self) -> Hark {
        let dir = self.dir.unwrap_or_else(tempdir);
        let config = with_state_dir(&self.config).replace("@DIR@", &dir.path().to_string_lossy());
        let file = dir.path().join("hark.toml");
        std::fs::write(&file, config).expect("write config");
        let pings = Arc::default();
        let (child, log) = spawn_ready(dir.path(), &file, &self.how, &pings);
        Hark {
            child,
            dir,
            log,
            how: self.how,
            pings,
        }
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hark-test")
        .tempdir()
        .expect("tempdir")
}

/// Writes `config` (with `@DIR@` replaced by the temp dir) and starts `hark run` on it,
/// returning once it has sent READY=1.
pub fn start(config: &str) -> Hark {
    Start::new(config).run()
}

pub fn start_in(dir: tempfile::TempDir, config: &str) -> Hark {
    Start::new(config).dir(dir).run()
}

/// As [`start_in`], with `prepare` applied to the command first (limits, environment).
pub fn start_with(dir: tempfile::TempDir, config: &str, prepare: fn(&mut Command)) -> Hark {
    Start::new(config).dir(dir).prepare(prepare).run()
}

/// Starts `hark run -c file` and waits for READY=1 on a notify socket in `dir`; with a
/// watchdog, goes on listening and records each WATCHDOG=1 in `pings` while the daemon's
/// `Hark` lives.
fn spawn_ready(
    dir: &Path,
    file: &Path,
    how: &How,
    pings: &Arc<Mutex<Vec<Instant>>>,
) -> (Child, Arc<Mutex<String>>) {
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut cmd = Command::new(HARK);
    (how.prepare)(&mut cmd);
    let rust_log = how
        .rust_log
        .clone()
        .unwrap_or_else(|| std::env::var("HARK_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()));
    cmd.arg("run")
        .arg("-c")
        .arg(file)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1");
    if let Some(every) = how.watchdog {
        cmd.env("WATCHDOG_USEC", every.as_micros().to_string());
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hark");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => break,
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "hark never sent READY=1 ({e}); log:\n{}",
                    log.lock().unwrap()
                );
            }
        }
    }
    if how.watchdog.is_some() {
        record_pings(sock, Arc::downgrade(pings));
    }
    (child, log)
}

/// Records each WATCHDOG=1 until the daemon's `Hark` is gone.
fn record_pings(sock: UnixDatagram, pings: std::sync::Weak<Mutex<Vec<Instant>>>) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Some(pings) = pings.upgrade() {
            if let Ok(n) = sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                    pings.lock().unwrap().push(Instant::now());
                }
            }
        }
    });
}

/// The configuration most tests need: watch `w` (its table's keys in `watch`), rule `r`
/// over it (more keys in `rule`) running action `rec`, which appends each template of
/// `record`, rendered, to `@DIR@/out` as a NUL-ended record (read with `Hark::lines`).
pub fn recorded(watch: &str, rule: &str, record: &[&str]) -> String {
    format!(
        "[watch.w]\n{watch}\n\n[rule.r]\nwatch = \"w\"\nthen = [\"rec\"]\n{rule}\n\n\
         [action.rec]\ntype = \"shell\"\ncommand = {}\n",
        recorder_argv("@DIR@/out", record)
    )
}

/// A config file under `tests/fixtures/`, with each `(placeholder, value)` replaced.
pub fn fixture(name: &str, replace: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    text
}

/// Gives the config a state directory and a control socket of its own in the temp dir,
/// unless it names them: every daemon under test keeps its rule states apart.
pub fn with_state_dir(config: &str) -> String {
    let mut lines = String::new();
    if !config.contains("state_dir") {
        lines.push_str("state_dir = \"@DIR@/state\"\n");
    }
    if !config.contains("control_socket") {
        lines.push_str("control_socket = \"@DIR@/control.sock\"\n");
    }
    match config.find("[daemon]\n") {
        Some(i) => {
            let at = i + "[daemon]\n".len();
            format!("{}{lines}{}", &config[..at], &config[at..])
        }
        None => format!("[daemon]\n{lines}\n{config}"),
    }
}

impl Hark {
    /// Runs `hark ARGS... --socket <this daemon's socket>`: exit code, stdout, stderr.
    pub fn ctl(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(HARK)
            .args(args)
            .arg("--socket")
            .arg(self.path("control.sock"))
            .output()
            .expect("run hark");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `hark status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let (code, out, err) = self.ctl(&["status", "--json"]);
        assert_eq!(code, Some(0), "hark status: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"))
    }

    /// Replaces the config file and sends SIGHUP.
    pub fn reload_with(&self, config: &str) {
        let config = with_state_dir(config).replace("@DIR@", &self.dir.path().to_string_lossy());
        std::fs::write(self.path("hark.toml"), config).expect("write config");
        self.signal(libc::SIGHUP);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The NUL-separated records the test's action appended to `out`, as text.
    pub fn lines(&self) -> Vec<String> {
        records(&self.path("out"))
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .collect()
    }

    /// Waits (bounded) until `out` holds `n` records; returns what it holds then.
    pub fn wait_lines(&self, n: usize) -> Vec<String> {
        wait_for(Duration::from_secs(20), || self.lines().len() >= n);
        self.lines()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) -> bool {
        wait_for(Duration::from_secs(10), || self.log().contains(needle))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGSTOP, and waits (bounded) until every thread of the daemon is stopped: kill(2)
    /// returns before they are, and one still running would read what comes next.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let task = format!("/proc/{}/task", self.child.id());
        let stopped = || {
            let Ok(threads) = std::fs::read_dir(&task) else {
                return false;
            };
            threads.flatten().all(|t| {
                // The state is the first field after the command's closing parenthesis.
                std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                    s.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
            })
        };
        assert!(
            wait_for(Duration::from_secs(10), stopped),
            "hark did not stop on SIGSTOP"
        );
    }

    /// Stops the daemon (SIGTERM) and starts it again on the same config and state.
    pub fn restart(&mut self) {
        assert_eq!(
            self.stop(),
            Some(0),
            "hark did not stop cleanly:\n{}",
            self.log()
        );
        self.start_again();
    }

    /// Stops the daemon (SIGTERM), leaves it down for `down`, and starts it again on the
    /// same config and state.
    pub fn restart_after(&mut self, down: Duration) {
        assert_eq!(
            self.stop(),
            Some(0),
            "hark did not stop cleanly:\n{}",
            self.log()
        );
        std::thread::sleep(down);
        self.start_again();
    }

    fn start_again(&mut self) {
        let file = self.dir.path().join("hark.toml");
        let (child, log) = spawn_ready(self.dir.path(), &file, &self.how, &self.pings);
        self.child = child;
        self.log = log;
    }

    /// When it sent WATCHDOG=1 (started with [`Start::watchdog`]).
    pub fn pings(&self) -> Vec<Instant> {
        self.pings.lock().unwrap().clone()
    }

    /// SIGKILL (nothing is flushed or finished), then starts it again on the same config
    /// and state.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.start_again();
    }

    /// SIGTERM, then the exit code (bounded wait).
    pub fn stop(&mut self) -> Option<i32> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.code();
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Hark {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// NUL-separated records an action appended to `file`.
pub fn records(file: &Path) -> Vec<Vec<u8>> {
    let Ok(bytes) = std::fs::read(file) else {
        return Vec::new();
    };
    bytes
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Waits until `file` holds at least `n` records, then a little longer to catch extras.
pub fn wait_records(file: &Path, n: usize) -> Vec<Vec<u8>> {
    wait_for(Duration::from_secs(10), || records(file).len() >= n);
    std::thread::sleep(Duration::from_millis(300));
    records(file)
}

pub fn bytes_of(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// A shell action that appends each argument after the first, NUL-terminated, to `out`.
/// The values arrive as argv elements: nothing is interpolated into the script.
pub fn recorder_argv(out: &str, args: &[&str]) -> String {
    let mut argv = vec![
        "\"/bin/sh\"".to_string(),
        "\"-c\"".to_string(),
        "'printf \"%s\\0\" \"$@\" >> \"$0\"'".to_string(),
        format!("\"{out}\""),
    ];
    argv.extend(args.iter().map(|a| format!("\"{a}\"")));
    format!("[{}]", argv.join(", "))
}

/// Copies a program to run. The copy is written by a `cp` child, not by this process: a
/// child another test thread forks while the copy is open for writing would hold that fd
/// until its own exec, and any exec of the copy (by a shell or by hark too) would fail
/// meanwhile with "text file busy". `cp`'s fds are nobody else's.
pub fn copy_program(from: &str, to: &Path) {
    let status = Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {from} {}: {status}", to.display());
}

/// Runs `hark test` on `config` (each watch sampled once): each event as (watch, fields).
pub fn sampled(config: &str) -> Vec<(String, serde_json::Value)> {
    let dir = tempdir();
    let file = dir.path().join("hark.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(HARK)
        .args(["test", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("event from watch `"))
        .filter_map(|l| {
            let (name, rest) = l.split_once('`')?;
            let json = rest.split_once(": ")?.1;
            Some((name.to_string(), serde_json::from_str(json).ok()?))
        })
        .collect()
}
