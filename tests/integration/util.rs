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
    /// Applied to the command at each start.
    prepare: fn(&mut Command),
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
    start_in(tempdir(), config)
}

pub fn start_in(dir: tempfile::TempDir, config: &str) -> Hark {
    start_with(dir, config, |_| {})
}

/// As [`start_in`], with `prepare` applied to the command first (limits, environment).
pub fn start_with(dir: tempfile::TempDir, config: &str, prepare: fn(&mut Command)) -> Hark {
    let config = with_state_dir(config).replace("@DIR@", &dir.path().to_string_lossy());
    let file = dir.path().join("hark.toml");
    std::fs::write(&file, config).expect("write config");
    let (child, log) = spawn_ready(dir.path(), &file, prepare);
    Hark {
        child,
        dir,
        log,
        prepare,
    }
}

/// Starts `hark run -c file` and waits for READY=1 on a notify socket in `dir`.
fn spawn_ready(dir: &Path, file: &Path, prepare: fn(&mut Command)) -> (Child, Arc<Mutex<String>>) {
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut cmd = Command::new(HARK);
    prepare(&mut cmd);
    let mut child = cmd
        .arg("run")
        .arg("-c")
        .arg(file)
        .env("NOTIFY_SOCKET", &sock_path)
        .env(
            "RUST_LOG",
            std::env::var("HARK_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
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
    (child, log)
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
        let file = self.dir.path().join("hark.toml");
        let (child, log) = spawn_ready(self.dir.path(), &file, self.prepare);
        self.child = child;
        self.log = log;
    }

    /// SIGKILL (nothing is flushed or finished), then starts it again on the same config
    /// and state.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let file = self.dir.path().join("hark.toml");
        let (child, log) = spawn_ready(self.dir.path(), &file, self.prepare);
        self.child = child;
        self.log = log;
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
