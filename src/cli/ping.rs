//! `hark ping NAME`: one heartbeat; `hark ping NAME -- COMMAND ARGS...`: a job wrapped
//! between a start and its end. The job's output passes through to hark's own stdout and
//! stderr; its last 4 KiB go with the end event.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hark::control::{client, Request};
use serde_json::{json, Map, Value};

/// How much of a wrapped job's output its end event carries.
const OUTPUT_KEPT: usize = 4096;
/// How long output is still read after the job exits (a child it left behind may hold
/// the pipe open forever).
const DRAIN: Duration = Duration::from_secs(2);
/// The exit status of a job that could not be started, as a shell's.
const NOT_STARTED: u8 = 127;

/// What a single ping says.
pub struct Kind {
    kind: &'static str,
    exit: Option<i32>,
}

impl Kind {
    pub fn of(start: bool, fail: bool, exit: Option<i32>) -> Kind {
        let kind = match (start, fail, exit) {
            (true, _, _) => "start",
            (_, true, _) => "fail",
            (_, _, Some(c)) if c != 0 => "fail",
            _ => "success",
        };
        Kind { kind, exit }
    }
}

/// Sends one ping and says what became of it.
pub fn once(socket: &Path, name: &str, kind: Kind) -> client::Exit {
    let mut fields = Map::new();
    fields.insert("kind".into(), kind.kind.into());
    if let Some(c) = kind.exit {
        fields.insert("exit_code".into(), c.into());
    }
    send(socket, name, fields)
}

fn send(socket: &Path, name: &str, fields: Map<String, Value>) -> client::Exit {
    let request = Request::Ping {
        watch: name.to_string(),
        fields,
    };
    match client::call(socket, &request) {
        Ok(r) => match r.error {
            Some(e) => {
                eprintln!("hark: {e}");
                client::Exit::Failed
            }
            None => client::Exit::Ok,
        },
        Err(e) => {
            eprintln!("hark: {e}");
            client::Exit::Unreachable
        }
    }
}

/// Runs the job between a start and an end event; returns its exit status. A ping the
/// daemon does not take is said on stderr and does not stop the job.
pub fn wrap(socket: &Path, name: &str, command: &[OsString]) -> u8 {
    let text = command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut start = Map::new();
    start.insert("kind".into(), "start".into());
    start.insert("command".into(), text.clone().into());
    if matches!(send(socket, name, start), client::Exit::Failed) {
        eprintln!("hark: running the job anyway");
    }
    let began = Instant::now();
    let spawned = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let error = format!("cannot start {:?}: {e}", command[0].to_string_lossy());
            eprintln!("hark: {error}");
            let end = json!({
                "kind": "fail", "exit_code": NOT_STARTED, "command": text, "error": error,
                "duration_ms": 0, "output": "", "output_truncated": false,
            });
            let _ = send(socket, name, end.as_object().cloned().unwrap_or_default());
            return NOT_STARTED;
        }
    };
    let kept = Arc::new(Mutex::new(Tail::default()));
    let (done_tx, done) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        pass_through(out, std::io::stdout(), &kept, done_tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        pass_through(err, std::io::stderr(), &kept, done_tx);
    }
    let pid = child.id();
    let status = child.wait();
    let duration = began.elapsed();
    let until = Instant::now() + DRAIN;
    for _ in 0..2 {
        if done
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    let code = match &status {
        Ok(s) => exit_code(s),
        Err(_) => NOT_STARTED as i32,
    };
    let (output, truncated) = kept.lock().map(|t| t.text()).unwrap_or_default();
    let mut end = json!({
        "kind": if code == 0 { "success" } else { "fail" },
        "exit_code": code, "command": text, "pid": pid,
        "duration_ms": duration.as_secs_f64() * 1000.0,
        "output": output, "output_truncated": truncated,
    });
    if let (Err(e), Some(o)) = (&status, end.as_object_mut()) {
        o.insert(
            "error".into(),
            format!("cannot wait for the job: {e}").into(),
        );
    }
    let _ = send(socket, name, end.as_object().cloned().unwrap_or_default());
    u8::try_from(code).unwrap_or(1)
}

/// A process's exit status as a shell gives it: its code, or 128 + the signal.
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Copies a pipe to `to` on a thread of its own, keeping its last bytes.
fn pass_through(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    kept: &Arc<Mutex<Tail>>,
    done: mpsc::Sender<()>,
) {
    let kept = Arc::clone(kept);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = to.write_all(&buf[..n]).and_then(|_| to.flush());
                    if let Ok(mut k) = kept.lock() {
                        k.push(&buf[..n]);
                    }
                }
            }
        }
        let _ = done.send(());
    });
}

/// The last OUTPUT_KEPT bytes of a job's output, and whether earlier ones were cut.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        let over = self.bytes.len().saturating_sub(OUTPUT_KEPT);
        if over > 0 {
            self.bytes.drain(..over);
            self.cut = true;
        }
    }

    /// As text (invalid UTF-8 replaced; a character cut at the front dropped).
    fn text(&self) -> (String, bool) {
        let (a, b) = self.bytes.as_slices();
        let all = [a, b].concat();
        let start = match self.cut {
            // Skip continuation bytes of a character cut at the front.
            true => all.iter().position(|b| b & 0xC0 != 0x80).unwrap_or(0),
            false => 0,
        };
        (
            String::from_utf8_lossy(&all[start..]).into_owned(),
            self.cut,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes_and_says_it_cut() {
        let mut t = Tail::default();
        t.push(b"hello\n");
        assert_eq!(t.text(), ("hello\n".to_string(), false));
        let long = "é".repeat(3000);
        t.push(long.as_bytes());
        let (text, cut) = t.text();
        assert!(cut);
        assert!(text.len() <= OUTPUT_KEPT && text.len() >= OUTPUT_KEPT - 1);
        assert!(
            text.chars().all(|c| c == 'é'),
            "no broken character at the front"
        );
    }

    #[test]
    fn a_ping_kind_follows_its_flags() {
        assert_eq!(Kind::of(false, false, None).kind, "success");
        assert_eq!(Kind::of(true, false, None).kind, "start");
        assert_eq!(Kind::of(false, true, None).kind, "fail");
        assert_eq!(Kind::of(false, false, Some(0)).kind, "success");
        assert_eq!(Kind::of(false, false, Some(2)).kind, "fail");
    }
}
