//! `type = "journal"`: entries of the systemd journal as events, one per entry.
//!
//! Read through `journalctl --follow --output=export --cursor=…`, not by linking
//! libsystemd's sd-journal:
//! - hark links no C library: no libsystemd ABI to match, no `unsafe` FFI over journal
//!   files that another process writes, rotates and vacuums while they are read;
//! - journalctl is systemd's own reader, of the same version as the journal: it follows
//!   rotation (new files), vacuuming (files deleted under it), `--directory`, corrupt
//!   files (skipped), and filters at the source: `FIELD=value` matches (values of one
//!   field ORed, fields ANDed, as `match` says) and `--priority`;
//! - every entry carries its `__CURSOR`: stored with what the entry led to (as log
//!   positions are), it is where a restart takes up (`--cursor`, its entry skipped
//!   here); a cursor whose entry was vacuumed meanwhile seeks to the next entry, not an
//!   error.
//!
//! The cost is one child process per watch and an entry in the export format (read in
//! `export`; a quarter of the work of journalctl's JSON, measured in
//! docs/benchmarks.md). If journalctl exits (a directory that is not there, a journal it
//! cannot read), the reason is shown in `hark status` and it is started again, from the
//! last cursor, after 1 s, then up to 30 s.

mod export;

use std::io::{BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::{lock, WatchError};
use crate::config::JournalWatch;
use crate::event::{Event, Mark};

/// A longest entry read from journalctl (its every field); longer ones are skipped, with a
/// problem said.
const MAX_ENTRY: usize = 16 << 20;

pub struct JournalHandle {
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<u32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl JournalHandle {
    pub fn problems(&self) -> Vec<String> {
        lock(&self.problems).clone()
    }

    /// Stops journalctl and the reader. Blocking.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        kill(&self.child);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn kill(child: &Mutex<Option<u32>>) {
    if let Some(pid) = *lock(child) {
        // SAFETY: kill(2) on the journalctl this watch started and has not reaped yet (the
        // slot is emptied before it is waited for).
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
}

/// Starts reading after `cursor` (or from now, for a journal never read).
pub fn start(
    name: Arc<str>,
    host: Arc<str>,
    config: JournalWatch,
    events: mpsc::Sender<Event>,
    cursor: Option<Arc<str>>,
) -> Result<JournalHandle, WatchError> {
    let probe = Command::new("journalctl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Err(WatchError::Other(format!(
            "watch `{name}`: journalctl cannot be run (install systemd): the journal is read through it"
        )));
    }
    // A journal never read is read from its end as hark starts (unless `start =
    // "beginning"`): where that is is asked before the watch is reported started, so
    // nothing written after READY is missed.
    let cursor = match cursor {
        Some(c) => Some(c),
        None if config.from_beginning => None,
        None => tail_cursor(&config),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let child = Arc::new(Mutex::new(None));
    let problems = Arc::new(Mutex::new(Vec::new()));
    let reader = Reader {
        key: Arc::from(format!("{name}/journal")),
        name: Arc::clone(&name),
        host,
        config,
        events,
        cursor,
        stop: Arc::clone(&stop),
        child: Arc::clone(&child),
        problems: Arc::clone(&problems),
    };
    let thread = std::thread::Builder::new()
        .name("hark-journal".into())
        .spawn(move || reader.run())
        .map_err(|e| WatchError::Other(format!("watch `{name}`: cannot start: {e}")))?;
    Ok(JournalHandle {
        stop,
        child,
        thread: Some(thread),
        problems,
    })
}

struct Reader {
    name: Arc<str>,
    key: Arc<str>,
    host: Arc<str>,
    config: JournalWatch,
    events: mpsc::Sender<Event>,
    /// The last entry read.
    cursor: Option<Arc<str>>,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<u32>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

/// Why reading stopped.
enum Ended {
    /// journalctl exited or its output ended.
    Exited,
    /// The engine is gone (hark stops).
    Closed,
}

impl Reader {
    fn run(mut self) {
        let mut delay = Duration::from_secs(1);
        while !self.stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let mut child = match self.spawn() {
                Ok(c) => c,
                Err(e) => {
                    self.problem(format!("cannot run journalctl: {e}"));
                    self.pause(&mut delay, started);
                    continue;
                }
            };
            *lock(&self.child) = Some(child.id());
            let stderr = child.stderr.take().map(drain_stderr);
            let ended = match child.stdout.take() {
                Some(out) => self.read(out),
                None => Ended::Exited,
            };
            kill(&self.child);
            *lock(&self.child) = None;
            let status = child.wait();
            let said = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
            if matches!(ended, Ended::Closed) || self.stop.load(Ordering::SeqCst) {
                return;
            }
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            self.problem(format!(
                "journalctl stopped ({how}){}{}",
                if said.is_empty() { "" } else { ": " },
                said.trim()
            ));
            self.pause(&mut delay, started);
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut cmd = Command::new("journalctl");
        cmd.args(["--follow", "--output=export", "--no-pager", "--quiet"]);
        // `--cursor`, not `--after-cursor`: journalctl 252 skips the first entry after
        // the cursor's place even when the cursor's own entry was vacuumed (a test lost
        // an entry to it); the cursor's entry, when it is still there, is skipped here.
        match &self.cursor {
            Some(c) => cmd.arg(format!("--cursor={c}")),
            // From the beginning, or an empty journal (no tail to start after).
            None => cmd.arg("--lines=all"),
        };
        // SAFETY: prctl(2) only, between fork and exec: async-signal-safe. journalctl
        // gets SIGTERM when the thread that started it ends, hark killed with it.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd.args(self.config.journalctl_args())
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Waits before starting journalctl again (less long if it ran a while), unless the
    /// watch stops meanwhile.
    fn pause(&self, delay: &mut Duration, started: Instant) {
        if started.elapsed() > Duration::from_secs(60) {
            *delay = Duration::from_secs(1);
        }
        let until = Instant::now() + *delay;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        *delay = (*delay * 2).min(Duration::from_secs(30));
    }

    fn problem(&self, p: String) {
        tracing::warn!(watch = %self.name, "{p}");
        let mut problems = lock(&self.problems);
        problems.clear();
        problems.push(p);
    }

    /// Reads entries until journalctl's output ends.
    fn read(&mut self, out: std::process::ChildStdout) -> Ended {
        let mut out = BufReader::with_capacity(1 << 16, out);
        let mut entry = export::Entry::default();
        // The entry journalctl starts at, when it is the one read last (`--cursor`).
        let mut read_before = self.cursor.clone();
        loop {
            match export::read_entry(&mut out, &mut entry, MAX_ENTRY) {
                Ok(export::Outcome::Entry) => {}
                Ok(export::Outcome::TooLong) => {
                    self.problem(format!("an entry over {} MiB was skipped", MAX_ENTRY >> 20));
                    continue;
                }
                Ok(export::Outcome::End) => return Ended::Exited,
                Err(e) => {
                    self.problem(format!("journalctl's output cannot be read: {e}"));
                    return Ended::Exited;
                }
            }
            lock(&self.problems).clear();
            let Some(cursor) = entry
                .get("__CURSOR")
                .and_then(|c| std::str::from_utf8(c).ok())
            else {
                continue;
            };
            if read_before.take().is_some_and(|c| *c == *cursor) {
                continue;
            }
            let cursor: Arc<str> = Arc::from(cursor);
            self.cursor = Some(Arc::clone(&cursor));
            // An entry left out moves the stored cursor too, once the output pauses (the
            // later entries' cursors supersede it until then).
            let left_out = match self.event(&entry, &cursor) {
                Some(ev) => {
                    if self.events.blocking_send(ev).is_err() {
                        return Ended::Closed;
                    }
                    None
                }
                None => Some(cursor),
            };
            if let (Some(c), true) = (left_out, out.buffer().is_empty()) {
                if self.events.blocking_send(self.only_cursor(c)).is_err() {
                    return Ended::Closed;
                }
            }
        }
    }

    /// The event of an entry, or `None` when `units` or `pattern` leave it out.
    fn event(&self, entry: &export::Entry, cursor: &Arc<str>) -> Option<Event> {
        let unit = text(entry.get("_SYSTEMD_UNIT"));
        if let Some(globs) = &self.config.unit_globs {
            if !globs.is_match(&unit) {
                return None;
            }
        }
        let message = text(entry.get("MESSAGE"));
        let mut fields = Map::new();
        if let Some(re) = &self.config.pattern {
            let caps = re.captures(&message)?;
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    fields.insert(name.to_string(), Value::from(m.as_str()));
                }
            }
        }
        let int = |k: &str| {
            let v = std::str::from_utf8(entry.get(k)?).ok()?;
            v.trim().parse::<i64>().ok()
        };
        fields.insert("priority".into(), Value::from(int("PRIORITY").unwrap_or(6)));
        if let Some(pid) = int("_PID") {
            fields.insert("pid".into(), Value::from(pid));
        }
        let time = int("__REALTIME_TIMESTAMP")
            .and_then(|us| u64::try_from(us).ok())
            .map_or_else(SystemTime::now, |us| {
                SystemTime::UNIX_EPOCH + Duration::from_micros(us)
            });
        fields.insert("unit".into(), Value::from(unit));
        fields.insert(
            "identifier".into(),
            Value::from(text(entry.get("SYSLOG_IDENTIFIER"))),
        );
        fields.insert("message".into(), Value::from(message));
        fields.insert("cursor".into(), Value::from(&**cursor));
        let mut all = Map::new();
        for (name, value) in entry.fields() {
            let name = String::from_utf8_lossy(name);
            if !all.contains_key(&*name) {
                all.insert(name.into_owned(), Value::from(text(Some(value))));
            }
        }
        fields.insert("fields".into(), Value::Object(all));
        let mut event = Event::new(&self.name, "journal", &self.host, true, fields)
            .at(Arc::clone(&self.key), Mark::Text(Arc::clone(cursor)));
        event.time = time;
        Some(event)
    }

    /// An event that only moves the stored cursor (entries no rule would see).
    fn only_cursor(&self, cursor: Arc<str>) -> Event {
        let key = Arc::clone(&self.key);
        Event::only_cursor(&self.name, "journal", &self.host, key, Mark::Text(cursor))
    }
}

/// The cursor of the journal's last entry (`None` for an empty or unreadable journal).
fn tail_cursor(config: &JournalWatch) -> Option<Arc<str>> {
    let mut cmd = Command::new("journalctl");
    cmd.args([
        "--lines=1",
        "--output=export",
        "--output-fields=__CURSOR",
        "--no-pager",
        "--quiet",
    ]);
    if let Some(d) = &config.directory {
        cmd.arg(format!("--directory={}", d.display()));
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let mut entry = export::Entry::default();
    let mut last = None;
    let mut r = &out.stdout[..];
    while let Ok(export::Outcome::Entry) = export::read_entry(&mut r, &mut entry, MAX_ENTRY) {
        last = entry
            .get("__CURSOR")
            .map(String::from_utf8_lossy)
            .map(Arc::from);
    }
    last
}

/// A journal field's value as text: bytes that are not UTF-8 as U+FFFD; empty when the
/// entry has no such field.
fn text(v: Option<&[u8]>) -> String {
    String::from_utf8_lossy(v.unwrap_or_default()).into_owned()
}

/// Reads journalctl's stderr as it comes (a full pipe would stop it); its last 2 KiB.
fn drain_stderr(err: std::process::ChildStderr) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        let mut err = err;
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2048 {
                kept.drain(..kept.len() - 2048);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}
