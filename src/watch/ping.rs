//! `ping` watches: ICMP echo rounds. Every ping watch of the daemon shares one task, one
//! socket per address family and one timer (a queue of what is due next, woken through
//! the daemon's `Clock`): a thousand targets are entries in a heap, not a thousand tasks.
//! A round sends `count` requests `interval` apart, waits `timeout` after the last, and
//! reports one event; rounds fall on the periodic watches' grid.

mod icmp;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::clock::Clock;
use super::periodic::{anchor, millis, next_on_grid};
use super::Emitter;
use crate::config::PingWatch;
use crate::event::Event;
use icmp::Icmp;

/// The ping watches' task, started with the first of them.
pub struct Pinger {
    clock: Clock,
    tx: OnceLock<mpsc::UnboundedSender<Command>>,
}

enum Command {
    Add(u64, Box<Target>),
    Remove(u64),
}

/// A running ping watch.
pub struct PingHandle {
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl PingHandle {
    pub fn stop(self) {
        let _ = self.tx.send(Command::Remove(self.id));
    }

    pub fn problems(&self) -> Vec<String> {
        super::lock(&self.problems).clone()
    }
}

struct Target {
    to: Emitter,
    config: PingWatch,
    /// The address, or why the host name did not resolve.
    addr: Result<IpAddr, String>,
    /// Where its rounds are laid out from; `None`: the first round at once (`hark test`).
    anchor: Option<Instant>,
    round: Round,
}

#[derive(Default)]
struct Round {
    sent: u32,
    rtts: Vec<f64>,
    /// Sequence numbers still awaited.
    seqs: Vec<u16>,
    error: String,
}

/// What is due: probe `k` of a target's round, or (`FINISH`) its report.
type Job = (Reverse<Instant>, u64, u32);
const FINISH: u32 = u32::MAX;

impl Pinger {
    pub fn new(clock: Clock) -> Pinger {
        Pinger {
            clock,
            tx: OnceLock::new(),
        }
    }

    /// Starts pinging for a watch. Resolves a host name (blocking: call it off the async
    /// runtime, inside its context).
    pub fn add(&self, to: Emitter, config: PingWatch) -> PingHandle {
        self.add_target(to, config, true)
    }

    fn add_target(&self, to: Emitter, config: PingWatch, on_grid: bool) -> PingHandle {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = resolve(&config.host);
        let problems = Arc::new(Mutex::new(
            addr.as_ref().err().cloned().into_iter().collect(),
        ));
        let tx = self
            .tx
            .get_or_init(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(rx, self.clock.clone()));
                tx
            })
            .clone();
        let target = Target {
            anchor: on_grid.then(|| anchor(config.every)),
            to,
            config,
            addr,
            round: Round::default(),
        };
        let _ = tx.send(Command::Add(id, Box::new(target)));
        PingHandle { id, tx, problems }
    }
}

fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("cannot resolve {host:?}: no address"))
}

/// One round of each watch now, for `hark test`, sharing one task and socket as the
/// daemon's do: their events.
pub async fn check_all(watches: Vec<(Arc<str>, PingWatch)>, host: Arc<str>) -> Vec<Event> {
    let (tx, mut rx) = mpsc::channel(watches.len().max(1));
    let pinger = Pinger::new(Clock::new());
    let handles: Vec<PingHandle> = watches
        .into_iter()
        .map(|(watch, config)| {
            let to = Emitter {
                watch,
                host: Arc::clone(&host),
                source: "ping",
                events: tx.clone(),
            };
            pinger.add_target(to, config, false)
        })
        .collect();
    drop(tx);
    let mut events = Vec::with_capacity(handles.len());
    while events.len() < handles.len() {
        match rx.recv().await {
            Some(e) => events.push(e),
            None => break,
        }
    }
    for h in handles {
        h.stop();
    }
    events
}

/// The sockets, opened when a target of their family first needs one.
#[derive(Default)]
struct Sockets {
    v4: Option<Result<Icmp, String>>,
    v6: Option<Result<Icmp, String>>,
}

impl Sockets {
    fn get(&mut self, v6: bool) -> &Result<Icmp, String> {
        let slot = if v6 { &mut self.v6 } else { &mut self.v4 };
        slot.get_or_insert_with(|| Icmp::open(v6))
    }
}

async fn readable(s: &Option<Result<Icmp, String>>) {
    match s {
        Some(Ok(icmp)) => {
            if icmp.readable().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        _ => std::future::pending().await,
    }
}

struct Loop {
    targets: HashMap<u64, Target>,
    due: BinaryHeap<Job>,
    /// (IPv6, sequence number) → (target, sent at).
    awaited: HashMap<(bool, u16), (u64, Instant)>,
    next_seq: [u16; 2],
    sockets: Sockets,
}

async fn run(mut rx: mpsc::UnboundedReceiver<Command>, clock: Clock) {
    let mut l = Loop {
        targets: HashMap::new(),
        due: BinaryHeap::new(),
        awaited: HashMap::new(),
        next_seq: [0, 0],
        sockets: Sockets::default(),
    };
    loop {
        let next = l.due.peek().map(|(Reverse(t), _, _)| *t);
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Command::Add(id, t)) => {
                    let at = match t.anchor {
                        Some(a) => next_on_grid(a, t.config.every, Instant::now()),
                        None => Instant::now(),
                    };
                    l.targets.insert(id, *t);
                    l.due.push((Reverse(at), id, 0));
                }
                Some(Command::Remove(id)) => {
                    if let Some(t) = l.targets.remove(&id) {
                        l.forget(&t);
                    }
                }
            },
            _ = clock.sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                l.run_due();
            }
            _ = readable(&l.sockets.v4) => l.read(false),
            _ = readable(&l.sockets.v6) => l.read(true),
        }
    }
}

impl Loop {
    fn run_due(&mut self) {
        let now = Instant::now();
        while let Some((Reverse(at), id, k)) = self.due.peek().copied() {
            if at > now {
                return;
            }
            self.due.pop();
            if !self.targets.contains_key(&id) {
                continue;
            }
            if k == FINISH {
                self.finish(id, now);
            } else {
                self.probe(id, k, at);
            }
        }
    }

    fn probe(&mut self, id: u64, k: u32, at: Instant) {
        let Some(t) = self.targets.get_mut(&id) else {
            return;
        };
        if k == 0 {
            t.round = Round::default();
        }
        let (count, interval, timeout) = (t.config.count, t.config.interval, t.config.timeout);
        let next = if k + 1 < count {
            (Reverse(at + interval), id, k + 1)
        } else {
            (Reverse(at + timeout), id, FINISH)
        };
        self.due.push(next);
        let Ok(addr) = t.addr.clone() else {
            return;
        };
        let v6 = addr.is_ipv6();
        let slot = usize::from(v6);
        // The next sequence number not still awaited.
        let mut seq = self.next_seq[slot];
        for _ in 0..=u16::MAX {
            seq = seq.wrapping_add(1);
            if !self.awaited.contains_key(&(v6, seq)) {
                break;
            }
        }
        self.next_seq[slot] = seq;
        t.round.sent += 1;
        match self.sockets.get(v6) {
            Err(e) => t.round.error = e.clone(),
            Ok(icmp) => match icmp.send(addr, seq) {
                Ok(()) => {
                    t.round.seqs.push(seq);
                    self.awaited.insert((v6, seq), (id, Instant::now()));
                }
                Err(e) => t.round.error = format!("send to {addr}: {e}"),
            },
        }
    }

    fn read(&mut self, v6: bool) {
        let Some(Ok(icmp)) = (if v6 {
            &self.sockets.v6
        } else {
            &self.sockets.v4
        }) else {
            return;
        };
        let now = Instant::now();
        while let Some(reply) = icmp.next_reply() {
            let Some(&(id, sent)) = self.awaited.get(&(v6, reply.seq)) else {
                continue;
            };
            let Some(t) = self.targets.get_mut(&id) else {
                continue;
            };
            if t.addr.as_ref().ok() != Some(&reply.from) {
                continue;
            }
            self.awaited.remove(&(v6, reply.seq));
            t.round.seqs.retain(|s| *s != reply.seq);
            t.round.rtts.push(millis(now - sent));
        }
    }

    /// A target's sequence numbers no longer awaited.
    fn forget(&mut self, t: &Target) {
        let v6 = t.addr.as_ref().is_ok_and(IpAddr::is_ipv6);
        for s in &t.round.seqs {
            self.awaited.remove(&(v6, *s));
        }
    }

    fn finish(&mut self, id: u64, now: Instant) {
        let Some(mut t) = self.targets.remove(&id) else {
            return;
        };
        self.forget(&t);
        let round = std::mem::take(&mut t.round);
        let error = match &t.addr {
            Err(e) => e.clone(),
            Ok(_) => round.error.clone(),
        };
        let fields = round_fields(&t, &round, error);
        let event = Event::new(&t.to.watch, t.to.source, &t.to.host, false, fields);
        match t.to.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let tx = t.to.events.clone();
                tokio::spawn(async move {
                    let _ = tx.send(event).await;
                });
            }
            // The daemon is stopping, or `hark test` has its event.
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
        let Some(a) = t.anchor else {
            return;
        };
        self.due
            .push((Reverse(next_on_grid(a, t.config.every, now)), id, 0));
        self.targets.insert(id, t);
    }
}

fn round_fields(t: &Target, r: &Round, error: String) -> Map<String, Value> {
    let received = r.rtts.len() as u32;
    let mut f = Map::new();
    f.insert("host".into(), Value::from(t.config.host.as_str()));
    let address = t.addr.as_ref().map(|a| a.to_string()).unwrap_or_default();
    f.insert("address".into(), Value::from(address));
    f.insert("sent".into(), Value::from(r.sent));
    f.insert("received".into(), Value::from(received));
    let loss = if r.sent == 0 {
        1.0
    } else {
        1.0 - f64::from(received) / f64::from(r.sent)
    };
    f.insert("loss".into(), Value::from(loss));
    let (min, avg, max, mdev) = stats(&r.rtts);
    f.insert("rtt_min_ms".into(), Value::from(min));
    f.insert("rtt_avg_ms".into(), Value::from(avg));
    f.insert("rtt_max_ms".into(), Value::from(max));
    f.insert("rtt_mdev_ms".into(), Value::from(mdev));
    f.insert("error".into(), Value::from(error));
    f
}

/// min, mean, max and mean deviation as ping(8) computes it (the standard deviation);
/// zeros when nothing came back.
fn stats(rtts: &[f64]) -> (f64, f64, f64, f64) {
    if rtts.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let n = rtts.len() as f64;
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    let avg = rtts.iter().sum::<f64>() / n;
    let sq = rtts.iter().map(|r| r * r).sum::<f64>() / n;
    let mdev = (sq - avg * avg).max(0.0).sqrt();
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    (r(min), r(avg), r(max), r(mdev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_as_ping_prints_them() {
        assert_eq!(stats(&[]), (0.0, 0.0, 0.0, 0.0));
        let (min, avg, max, mdev) = stats(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((min, avg, max), (1.0, 2.5, 4.0));
        assert_eq!(mdev, 1.118);
    }
}
