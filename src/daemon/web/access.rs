//! Who a request comes from and what it may do: a bearer token (`Authorization: Bearer`
//! or `?token=`, looked up by its SHA-256 and compared in constant time), a user of
//! `basic_auth_users` (bcrypt), a verified client certificate, or nobody. Tokens have
//! scopes and a rate; a push watch's own token may push to that watch only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::{Config, Open, Scopes, WatchKind};

/// The configuration's tokens, users and push watches, as the listener checks them.
pub struct Access {
    /// By the SHA-256 of the token: found in one lookup however many there are.
    keys: HashMap<[u8; 32], Key>,
    users: BTreeMap<String, String>,
    open_metrics: bool,
    open_page: bool,
    /// Push watches and the longest body each takes.
    pub pushes: HashMap<String, usize>,
    /// SHA-256 of `user:password` pairs bcrypt said yes to: bcrypt is slow on purpose,
    /// and a scraper sends the same pair every 15 s.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Passwords checked by bcrypt per user and second: guessing costs the daemon no
    /// more than this much CPU.
    guesses: Rates,
}

struct Key {
    name: String,
    scopes: Scopes,
    /// A push watch's own token: that watch only.
    watch: Option<String>,
    rate: u32,
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    Token { name: String, rate: u32 },
    User(String),
    Certificate(String),
}

impl Who {
    /// As the log and `hark status` name it.
    pub fn name(&self) -> String {
        match self {
            Who::Anonymous => "anonymous".into(),
            Who::Token { name, .. } => format!("token {name}"),
            Who::User(u) => format!("user {u}"),
            Who::Certificate(c) => format!("certificate {c}"),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    Open(Open),
    Read,
    Write,
    Push(&'a str),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No credentials, or wrong ones, or a push to a name that is not a push watch:
    /// 401, saying nothing more.
    Unauthorized,
    /// A known token without the scope: 403.
    Forbidden(&'static str),
}

/// Verified pairs remembered (all forgotten when full).
const CACHE_MAX: usize = 64;
/// bcrypt checks a second per user.
const GUESSES: u32 = 5;

impl Access {
    pub fn new(config: &Config) -> Access {
        let digest = |s: &str| -> [u8; 32] { Sha256::digest(s.as_bytes()).into() };
        let mut keys = HashMap::new();
        for t in config.tokens.values() {
            let key = Key {
                name: t.name.clone(),
                scopes: t.scopes,
                watch: None,
                rate: t.rate_limit,
            };
            keys.entry(digest(t.secret.expose())).or_insert(key);
        }
        let mut pushes = HashMap::new();
        for w in config.watches.values() {
            if let WatchKind::Push(p) = &w.kind {
                pushes.insert(w.name.clone(), p.max_body);
                let key = Key {
                    name: format!("of push watch {}", w.name),
                    scopes: Scopes::default(),
                    watch: Some(w.name.clone()),
                    rate: p.rate_limit,
                };
                keys.entry(digest(p.token.expose())).or_insert(key);
            }
        }
        let (addr, listener) = (config.daemon.metrics, &config.daemon.listener);
        let open = |what| addr.is_some_and(|a| listener.is_open(what, a));
        Access {
            keys,
            users: listener.basic_auth.clone(),
            open_metrics: open(Open::Metrics),
            open_page: open(Open::Page),
            pushes,
            verified: Mutex::new(HashSet::new()),
            guesses: Rates::default(),
        }
    }

    /// Who sent `headers` (with `query_token`, a `?token=`), and whether they may do
    /// what `need` says. `certificate`: the client certificate the TLS handshake verified.
    pub async fn check(
        self: &Arc<Self>,
        headers: &HeaderMap,
        query_token: Option<&str>,
        certificate: Option<&str>,
        need: Need<'_>,
    ) -> Result<Who, Refused> {
        let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let bearer = auth.and_then(|a| strip_scheme(a, "bearer")).or(query_token);
        if let Some(token) = bearer {
            return self.token(token, need);
        }
        if let Some(basic) = auth.and_then(|a| strip_scheme(a, "basic")) {
            let user = self.user(basic).await.ok_or(Refused::Unauthorized)?;
            return reader(Who::User(user), need);
        }
        if let Some(c) = certificate {
            return reader(Who::Certificate(c.to_string()), need);
        }
        match need {
            Need::Open(Open::Metrics) if self.open_metrics => Ok(Who::Anonymous),
            Need::Open(Open::Page) if self.open_page => Ok(Who::Anonymous),
            _ => Err(Refused::Unauthorized),
        }
    }

    fn token(&self, presented: &str, need: Need<'_>) -> Result<Who, Refused> {
        // Looked up by its SHA-256, not by its text: how long the lookup takes depends
        // on the digest only, which tells a guesser nothing about any token (finding
        // one from its digest is a preimage). The digests found equal are compared once
        // more in constant time.
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let (stored, key) = self
            .keys
            .get_key_value(&digest)
            .ok_or(Refused::Unauthorized)?;
        if !bool::from(stored.ct_eq(&digest)) {
            return Err(Refused::Unauthorized);
        }
        let who = Who::Token {
            name: key.name.clone(),
            rate: key.rate,
        };
        let s = key.scopes;
        match need {
            Need::Push(w) => {
                let may = key.watch.as_deref() == Some(w) || (s.push && key.watch.is_none());
                // A push anywhere else, or to a name that is no push watch: the same 401
                // as a wrong token, so names cannot be probed.
                (may && self.pushes.contains_key(w))
                    .then_some(who)
                    .ok_or(Refused::Unauthorized)
            }
            Need::Open(_) | Need::Read if s.read => Ok(who),
            Need::Write if s.write => Ok(who),
            Need::Write => Err(Refused::Forbidden("this token has no `write` scope")),
            _ if key.watch.is_some() => Err(Refused::Unauthorized),
            _ => Err(Refused::Forbidden("this token has no `read` scope")),
        }
    }

    /// The user a `Basic` credential names, if its password is right.
    async fn user(self: &Arc<Self>, basic: &str) -> Option<String> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        let hash = self.users.get(user)?.clone();
        let pair: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let cache = |v: &Mutex<HashSet<[u8; 32]>>| {
            v.lock().unwrap_or_else(|p| p.into_inner()).contains(&pair)
        };
        if cache(&self.verified) {
            return Some(user.to_string());
        }
        if self.guesses.take(user, GUESSES).is_err() {
            return None;
        }
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if !ok {
            return None;
        }
        let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= CACHE_MAX {
            v.clear();
        }
        v.insert(pair);
        Some(user.to_string())
    }

    /// Whether the listener asks for `Basic` credentials (said in `WWW-Authenticate`).
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }
}

/// A user or a certificate: reads only.
fn reader(who: Who, need: Need<'_>) -> Result<Who, Refused> {
    match need {
        Need::Open(_) | Need::Read => Ok(who),
        Need::Write => Err(Refused::Forbidden(
            "writes need a token with the `write` scope",
        )),
        Need::Push(_) => Err(Refused::Unauthorized),
    }
}

/// `Bearer X` → `X` (the scheme's case does not matter).
fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

/// Requests a second per token: a bucket of `rate` that refills at `rate` a second, so a
/// storm from one token takes only its own.
#[derive(Default)]
pub struct Rates(Mutex<HashMap<String, (f64, Instant)>>);

impl Rates {
    /// Takes one request of `name`'s; `Err(wait)` when its bucket is empty.
    pub fn take(&self, name: &str, rate: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let rate = f64::from(rate);
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (level, last) = all.entry(name.to_string()).or_insert((rate, now));
        *level = (*level + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *level >= 1.0 {
            *level -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(((1.0 - *level) / rate).max(0.001)))
    }
}

/// Refusals logged at most once a minute per address.
#[derive(Default)]
pub struct Quiet(Mutex<HashMap<IpAddr, Instant>>);

const LOG_EVERY: Duration = Duration::from_secs(60);
const QUIET_MAX: usize = 4096;

impl Quiet {
    /// Whether a refusal of `from` is logged now.
    pub fn speak(&self, from: SocketAddr) -> bool {
        let now = Instant::now();
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= QUIET_MAX {
            seen.retain(|_, t| now.duration_since(*t) < LOG_EVERY);
        }
        match seen.get(&from.ip()) {
            Some(t) if now.duration_since(*t) < LOG_EVERY => false,
            _ => {
                seen.insert(from.ip(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_its_rate_through_then_says_how_long_to_wait() {
        let r = Rates::default();
        for _ in 0..5 {
            assert_eq!(r.take("a", 5), Ok(()));
        }
        let wait = r.take("a", 5).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // Another token is not touched by the first's storm.
        assert_eq!(r.take("b", 5), Ok(()));
    }

    #[test]
    fn the_scheme_is_read_in_any_case_and_the_rest_kept_whole() {
        assert_eq!(strip_scheme("Bearer abc", "bearer"), Some("abc"));
        assert_eq!(strip_scheme("bearer  abc ", "bearer"), Some("abc"));
        assert_eq!(strip_scheme("Basic abc", "bearer"), None);
        assert_eq!(strip_scheme("Bearer", "bearer"), None);
    }
}
