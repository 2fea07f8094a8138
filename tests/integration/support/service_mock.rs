//! A chat or pager service on 127.0.0.1, as its fixture (tests/fixtures/notify/) says
//! it takes and answers: every request is checked (method, path, content type, auth
//! header, fields' types, fixed values, ranges, lengths, escaping) and answered as the
//! service does, by a script of answers (`ok`, `rate_limited`, `error`, `unauthorized`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `[daemon] url` the tests configure: the status page's link in each message.
pub const LINK: &str = "https://hark.example.org/";

/// One request as received, with what was wrong with it (empty: it was as the service
/// takes it) and when it came.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub body: Value,
    pub problems: Vec<String>,
    pub at: Instant,
    /// The answer it got (`ok`, `rate_limited`, ...).
    pub answer: String,
}

struct State {
    fixture: Value,
    /// What `{token}` and `{to}` stand for.
    token: String,
    to: String,
    script: VecDeque<&'static str>,
    seen: Vec<Seen>,
}

pub struct ServiceMock {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl ServiceMock {
    /// The service of `tests/fixtures/notify/NAME.json`, its token and recipient as the
    /// action is configured with.
    pub fn start(name: &str, token: &str, to: &str) -> ServiceMock {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/notify")
            .join(format!("{name}.json"));
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            fixture,
            token: token.to_string(),
            to: to.to_string(),
            script: VecDeque::new(),
            seen: Vec::new(),
        }));
        let s = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        ServiceMock { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The answers to the next requests, in order; `ok` after them.
    pub fn script(&self, answers: &[&'static str]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Waits until `n` requests came (or 20 s passed), then a moment for more.
    pub fn wait(&self, n: usize) -> Vec<Seen> {
        let start = Instant::now();
        while self.seen().len() < n && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.seen()
    }

    pub fn fixture(&self, path: &str) -> Value {
        let s = self.state.lock().unwrap();
        at(&s.fixture, path).cloned().unwrap_or(Value::Null)
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, extra, content_type, answer_body) = {
            let mut s = state.lock().unwrap();
            let answer = s.script.pop_front().unwrap_or("ok");
            let seen = check(&s, method, path, headers, &body, answer);
            s.seen.push(seen);
            let a = &s.fixture[answer];
            let status = a["status"].as_u64().unwrap_or(200);
            let extra: Vec<(String, String)> = a["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let ct = a["content_type"]
                .as_str()
                .unwrap_or("application/json")
                .to_string();
            let b = match &a["body"] {
                Value::String(t) => t.clone(),
                v => v.to_string(),
            };
            (status, extra, ct, b)
        };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            answer_body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(answer_body.as_bytes()))
            .is_err()
        {
            return;
        }
    }
}

/// A field by dotted path (`embeds.0.title`).
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, k| match k.parse::<usize>() {
            Ok(i) if v.is_array() => v.get(i),
            _ => v.get(k),
        })
}

fn check(
    s: &State,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: &[u8],
    answer: &str,
) -> Seen {
    let mut problems = Vec::new();
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        problems.push(format!("the body is not JSON: {e}"));
        Value::Null
    });
    // A resolve has its own request where the service has one.
    let resolving = json["event_action"] == "resolve"
        || (path.contains("/close") && s.fixture.get("resolved").is_some());
    let spec = match (resolving, s.fixture.get("resolved")) {
        (true, Some(r)) => r,
        _ => &s.fixture["firing"],
    };
    let fill = |t: &str| t.replace("{token}", &s.token).replace("{to}", &s.to);
    if spec["method"].as_str() != Some(method.as_str()) {
        problems.push(format!(
            "method {method}, the service takes {}",
            spec["method"]
        ));
    }
    if !path_matches(&fill(spec["path"].as_str().unwrap_or("")), &path, &s.to) {
        problems.push(format!("path {path}, the service takes {}", spec["path"]));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    };
    if !header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        problems.push(format!("content type {:?}", header("content-type")));
    }
    for (k, want) in spec["headers"].as_object().into_iter().flatten() {
        let want = fill(want.as_str().unwrap_or(""));
        // ntfy's token is optional: checked only when one is configured.
        if want.ends_with(' ') && s.token.is_empty() {
            continue;
        }
        if header(k) != Some(want.as_str()) {
            problems.push(format!("header {k}: {:?}", header(k)));
        }
    }
    check_fields(spec, &json, &fill, &mut problems);
    Seen {
        path,
        body: json,
        problems,
        at: Instant::now(),
        answer: answer.to_string(),
    }
}

fn check_fields(
    spec: &Value,
    json: &Value,
    fill: &dyn Fn(&str) -> String,
    problems: &mut Vec<String>,
) {
    for (p, ty) in spec["types"].as_object().into_iter().flatten() {
        let ok = match (at(json, p), ty.as_str().unwrap_or("")) {
            (Some(Value::String(_)), "string") => true,
            (Some(Value::Number(n)), "integer") => n.is_i64() || n.is_u64(),
            (Some(Value::Number(_)), "number") => true,
            (Some(Value::Array(_)), "array") => true,
            (Some(Value::Object(_)), "object") => true,
            (Some(Value::Bool(_)), "boolean") => true,
            _ => false,
        };
        if !ok {
            problems.push(format!("{p}: not a {ty}: {:?}", at(json, p)));
        }
    }
    for (p, want) in spec["equals"].as_object().into_iter().flatten() {
        let want = match want {
            Value::String(t) => Value::String(fill(t)),
            v => v.clone(),
        };
        if at(json, p) != Some(&want) {
            problems.push(format!("{p}: {:?}, the service takes {want}", at(json, p)));
        }
    }
    for (p, allowed) in spec["one_of"].as_object().into_iter().flatten() {
        let list = allowed.as_array().cloned().unwrap_or_default();
        if !at(json, p).is_some_and(|v| list.contains(v)) {
            problems.push(format!("{p}: {:?} is not one of {allowed}", at(json, p)));
        }
    }
    for (p, range) in spec["range"].as_object().into_iter().flatten() {
        let (lo, hi) = (
            range[0].as_i64().unwrap_or(0),
            range[1].as_i64().unwrap_or(0),
        );
        if !at(json, p)
            .and_then(Value::as_i64)
            .is_some_and(|v| (lo..=hi).contains(&v))
        {
            problems.push(format!("{p}: {:?} outside {lo}..={hi}", at(json, p)));
        }
    }
    for (p, max) in spec["max_chars"].as_object().into_iter().flatten() {
        let n = at(json, p)
            .and_then(Value::as_str)
            .map_or(0, |t| t.chars().count());
        if n as u64 > max.as_u64().unwrap_or(0) {
            problems.push(format!("{p}: {n} characters, the service takes {max}"));
        }
    }
    let text = |p: &Value| {
        at(json, p.as_str().unwrap_or(""))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for p in spec["escaped"].as_array().into_iter().flatten() {
        let t = text(p);
        // Slack: no `<` but the ones hark wrote for its own formatting: none.
        if t.contains('<') || t.contains('>') {
            problems.push(format!("{p}: an unescaped < or >: {t:.200}"));
        }
    }
    for p in spec["mention_free"].as_array().into_iter().flatten() {
        let t = text(p);
        if t.contains("@everyone") || t.contains("@here") {
            problems.push(format!("{p}: a mention: {t:.200}"));
        }
    }
    for p in spec["link_free"].as_array().into_iter().flatten() {
        let t = text(p);
        if t.contains("](") {
            problems.push(format!("{p}: a markdown link: {t:.200}"));
        }
    }
    for p in spec["html_safe"].as_array().into_iter().flatten() {
        let t = text(p);
        let link = format!("<a href=\"{LINK}\">status page</a>");
        let stripped = ["<b>", "</b>", "<i>", "</i>", "<br>", &link]
            .iter()
            .fold(t.clone(), |t, tag| t.replace(tag, ""));
        if stripped.contains('<') || stripped.contains('>') {
            problems.push(format!("{p}: a tag hark did not write: {t:.200}"));
        }
    }
}

/// `path` as the template says: each `{name}` left is one segment (percent-encoded
/// `{to}` counts as the value).
fn path_matches(template: &str, path: &str, to: &str) -> bool {
    let encoded: String = url_encode(to);
    let path = path.replace(&encoded, to);
    let (t_path, t_query) = template.split_once('?').unwrap_or((template, ""));
    let (p_path, p_query) = path.split_once('?').unwrap_or((&path, ""));
    if t_query != p_query {
        return false;
    }
    let t: Vec<&str> = t_path.split('/').collect();
    let p: Vec<&str> = p_path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The words of a service's error answer that hark must show (its own text).
pub fn error_words(body: &Value) -> String {
    if let Value::String(s) = body {
        return s.clone();
    }
    [
        "description",
        "errorDescription",
        "error.message",
        "error",
        "message",
        "errors.0",
    ]
    .iter()
    .find_map(|p| at(body, p).and_then(Value::as_str))
    .unwrap_or_default()
    .to_string()
}
