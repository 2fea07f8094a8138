//! The control socket's client side: one request and its answer (`call`), or a stream
//! of trace lines (`tail`); and what the CLI prints of each answer, with its exit status.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{render, Request, Response};

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the hark daemon at {path}: {message} (is it running? is this the socket of [daemon] control_socket?)")]
pub struct Unreachable {
    pub path: PathBuf,
    pub message: String,
}

/// Connects, sends `request`, and reads the daemon's answer (waiting at most 30 s);
/// returns the answer and the stream, to read on from.
fn ask(
    path: &Path,
    request: &Request,
) -> Result<(Response, BufReader<std::os::unix::net::UnixStream>), Unreachable> {
    let fail = |message: String| Unreachable {
        path: path.to_path_buf(),
        message,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|e| fail(e.to_string()))?;
    let timeout = Some(Duration::from_secs(30));
    stream
        .set_read_timeout(timeout)
        .and_then(|_| stream.set_write_timeout(timeout))
        .map_err(|e| fail(e.to_string()))?;
    let mut line = serde_json::to_vec(request).map_err(|e| fail(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| fail(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .map_err(|e| fail(e.to_string()))?;
    if answer.is_empty() {
        return Err(fail(
            "the daemon closed the connection without an answer".into(),
        ));
    }
    let response = serde_json::from_str(&answer)
        .map_err(|e| fail(format!("an answer that does not parse: {e}")))?;
    Ok((response, reader))
}

/// Sends one request to the daemon and waits (at most 30 s) for its answer.
pub fn call(path: &Path, request: &Request) -> Result<Response, Unreachable> {
    ask(path, request).map(|(response, _)| response)
}

/// Sends a `tail` request and hands each trace line to `each` until the daemon hangs up
/// (`Ok(Ok(()))`) or `each` says stop. `Ok(Err(why))`: the daemon refused the request.
pub fn tail(
    path: &Path,
    request: &Request,
    mut each: impl FnMut(crate::trace::Line) -> bool,
) -> Result<Result<(), String>, Unreachable> {
    let fail = |message: String| Unreachable {
        path: path.to_path_buf(),
        message,
    };
    let (response, mut reader) = ask(path, request)?;
    if let Some(e) = response.error {
        return Ok(Err(e));
    }
    // From here the stream waits as long as nothing happens.
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| fail(e.to_string()))?;
    loop {
        let mut text = String::new();
        match reader.read_line(&mut text) {
            Ok(0) => return Ok(Ok(())),
            Ok(_) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        let line: crate::trace::Line = serde_json::from_str(&text)
            .map_err(|e| fail(format!("a trace line that does not parse: {e}")))?;
        if !each(line) {
            return Ok(Ok(()));
        }
    }
}

/// How a client command ended, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    /// The daemon answered with an error, or the answer was not what was asked.
    Failed,
    /// The daemon could not be reached.
    Unreachable,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Unreachable => 3,
        }
    }
}

/// Asks, and prints the answer's text (`show`, which returns false when the answer lacks
/// what was asked) or its error.
fn ask_and_show(path: &Path, request: Request, show: impl FnOnce(Response) -> bool) -> Exit {
    let r = match call(path, &request) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hark: {e}");
            return Exit::Unreachable;
        }
    };
    if let Some(e) = &r.error {
        eprintln!("hark: {e}");
        return Exit::Failed;
    }
    if show(r) {
        Exit::Ok
    } else {
        eprintln!("hark: the daemon's answer holds nothing of what was asked");
        Exit::Failed
    }
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// `hark status`.
pub fn status(path: &Path, json: bool) -> Exit {
    ask_and_show(path, Request::Status, |r| match r.status {
        Some(st) if json => {
            println!("{}", pretty(&st));
            true
        }
        Some(st) => {
            print!("{}", render::render(&st));
            true
        }
        None => false,
    })
}

/// `hark explain RULE`.
pub fn explain(path: &Path, rule: String, json: bool) -> Exit {
    ask_and_show(path, Request::Explain { rule }, |r| match r.explain {
        Some(e) if json => {
            println!("{}", pretty(&e));
            true
        }
        Some(e) => {
            print!("{e}");
            true
        }
        None => false,
    })
}

/// `hark outbox`: the list.
pub fn outbox(path: &Path, json: bool) -> Exit {
    ask_and_show(path, Request::Outbox, |r| {
        let list = r.outbox.unwrap_or_default();
        if json {
            println!("{}", pretty(&list));
        } else {
            print!("{}", render::outbox(&list));
        }
        true
    })
}

/// A command whose answer is a message: silence, unsilence, outbox retry and drop.
pub fn command(path: &Path, request: Request) -> Exit {
    ask_and_show(path, request, |r| {
        println!("{}", r.message.unwrap_or_default());
        true
    })
}

/// `hark tail`: prints each trace line as it comes, flushed, until the daemon stops or
/// stdout is closed (`hark tail | head`).
pub fn follow(path: &Path, request: Request, json: bool) -> Exit {
    let mut out = std::io::stdout().lock();
    let mut text = render::TailText::default();
    let streamed = tail(path, &request, |line| {
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
        Ok(Ok(())) => Exit::Ok,
        Ok(Err(e)) => {
            eprintln!("hark: {e}");
            Exit::Failed
        }
        Err(e) => {
            eprintln!("hark: {e}");
            Exit::Unreachable
        }
    }
}
