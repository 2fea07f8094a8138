//! The daemon's one inotify instance and the one thread that reads it. Every file watch
//! lives on that thread: raw events are routed to the watches that asked for their watch
//! descriptor (two watches on one directory share it and each gets the event), and each
//! watch's debounce deadlines are kept in one heap. A thousand file watches are one
//! inotify instance and one thread, under Debian's default `max_user_instances` of 128.
//!
//! The instance subscribes to what file watches report and nothing else: creations,
//! deletions, writes, attribute changes, moves, and a watched directory's own deletion or
//! move. Opens, reads and closes never wake hark (every exec on the host opens
//! /etc/ld.so.cache), nor take room in the kernel's queue.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

mod raw;
mod room;
pub use room::room_made;
mod tenant;

use self::raw::READ_BATCH;
pub use self::raw::{parse, Inotify, Raw};
pub use self::tenant::Tenant;
use crate::event::Event;

/// What a file watch works with on the inotify thread: the instance (to arm and disarm
/// directories) and the events it makes, for the thread to hand to the engine.
pub struct Cx<'a> {
    pub id: u64,
    pub inotify: &'a mut Inotify,
    pub out: &'a mut VecDeque<(u64, Event)>,
    /// When the kernel's queue was last read empty.
    pub drained: SystemTime,
}

impl<'a> Cx<'a> {
    /// The same, with events going to `out` instead.
    pub fn with_out<'b>(&'b mut self, out: &'b mut VecDeque<(u64, Event)>) -> Cx<'b> {
        Cx {
            id: self.id,
            inotify: &mut *self.inotify,
            out,
            drained: self.drained,
        }
    }

    fn new(
        id: u64,
        inotify: &'a mut Inotify,
        out: &'a mut VecDeque<(u64, Event)>,
        drained: SystemTime,
    ) -> Self {
        Cx {
            id,
            inotify,
            out,
            drained,
        }
    }
}

/// Events made and not yet taken by the engine, at most, before the thread stops reading
/// inotify: the kernel's queue then fills, and overflows visibly, instead of hark's memory.
pub(crate) const OUT_MAX: usize = 8192;

/// In a stream of events (events again less than `STREAM` after the last), the thread
/// stops waiting on inotify and reads it every `LINGER` instead, until a read finds
/// nothing: a burst is read, judged and handed over in batches, with one wake-up of this
/// thread and one of the engine's per batch instead of per event (and the kernel has no
/// reader to wake for each change, which costs the writing process too). An event on its
/// own is read at once.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);
const STREAM: std::time::Duration = std::time::Duration::from_millis(20);

/// What the hub's thread is asked to do.
enum Command {
    Add(u64, Box<dyn Tenant>, mpsc::Sender<()>),
    Remove(u64, mpsc::Sender<()>),
}

/// The hub: hands file watches to its thread. Started at the first file watch.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Option<Running>>,
}

struct Running {
    tx: mpsc::Sender<Command>,
    wake: Arc<OwnedFd>,
    next_id: u64,
}

impl Hub {
    /// Starts `state` on the hub's thread once it is armed (arming happens there).
    pub fn add(&self, state: Box<dyn Tenant>) -> io::Result<HubHandle> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.is_none() {
            *inner = Some(start()?);
        }
        let Some(running) = inner.as_mut() else {
            return Err(io::Error::other("the inotify thread did not start"));
        };
        running.next_id += 1;
        let id = running.next_id;
        let (done_tx, done) = mpsc::channel();
        running
            .tx
            .send(Command::Add(id, state, done_tx))
            .map_err(|_| io::Error::other("the inotify thread stopped"))?;
        wake(&running.wake);
        let handle = HubHandle {
            id,
            tx: running.tx.clone(),
            wake: Arc::clone(&running.wake),
        };
        drop(inner);
        // Armed when this returns, as a watch's start promises.
        let _ = done.recv();
        Ok(handle)
    }
}

/// A file watch on the hub.
pub struct HubHandle {
    id: u64,
    tx: mpsc::Sender<Command>,
    wake: Arc<OwnedFd>,
}

impl HubHandle {
    /// Removes the watch (its watch descriptors with it) and waits until it is gone.
    pub fn stop(self) {
        let (done_tx, done) = mpsc::channel();
        if self.tx.send(Command::Remove(self.id, done_tx)).is_ok() {
            wake(&self.wake);
            let _ = done.recv();
        }
    }
}

fn wake(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: write 8 bytes from a u64 to our eventfd.
    unsafe {
        libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8);
    }
}

fn start() -> io::Result<Running> {
    let inotify = Inotify::new()?;
    // SAFETY: plain eventfd; owned below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    room::wake_with(&wake);
    let (tx, rx) = mpsc::channel();
    let thread_wake = Arc::clone(&wake);
    std::thread::Builder::new()
        .name("hark-files".into())
        .spawn(move || run(inotify, rx, &thread_wake))?;
    Ok(Running {
        tx,
        wake,
        next_id: 0,
    })
}

/// The thread's state: its tenants, their deadlines, the events not yet handed over.
struct Thread {
    inotify: Inotify,
    watches: HashMap<u64, Box<dyn Tenant>>,
    /// (deadline, watch): the earliest first; a watch may be in it more than once, and
    /// an entry whose watch has nothing due by then is a no-op.
    due: BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    out: VecDeque<(u64, Event)>,
    /// When the kernel's queue was last read empty: every change before is known.
    drained: SystemTime,
    last_events: Instant,
    streaming: bool,
}

/// The thread: waits for inotify, a command or the next deadline; no polling (but for
/// the engine: while it is behind, the thread tries again every few milliseconds).
fn run(inotify: Inotify, rx: mpsc::Receiver<Command>, wake: &OwnedFd) {
    let mut t = Thread {
        inotify,
        watches: HashMap::new(),
        due: BinaryHeap::new(),
        out: VecDeque::new(),
        drained: SystemTime::now(),
        last_events: Instant::now() - STREAM,
        streaming: false,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut raws = Vec::new();
    loop {
        let read_inotify = t.out.len() < OUT_MAX;
        let timeout = t.timeout(read_inotify);
        if !wait(&t.inotify.fd, wake, timeout, read_inotify && !t.streaming) {
            return;
        }
        let woke = Instant::now();
        // Commands first: a watch added is armed before its events are looked at.
        if !t.take_commands(&rx) {
            return;
        }
        if read_inotify {
            raws.clear();
            if !t.read(&mut buf, &mut raws, woke) {
                return;
            }
        }
        t.dispatch(&mut raws);
        t.flush_due();
        t.pump();
        hand_over(&mut t.out, &mut t.watches);
        if !t.out.is_empty() {
            room::waiting();
            // Room made between the try and the flag would wake no one: try once more.
            hand_over(&mut t.out, &mut t.watches);
        }
        t.watches.retain(|_, w| !w.closed());
    }
}

impl Thread {
    fn cx(&mut self, id: u64) -> Cx<'_> {
        Cx::new(id, &mut self.inotify, &mut self.out, self.drained)
    }

    /// How long to wait: until the next deadline, sooner while the engine is behind, a
    /// stream lingers or a log watch has more to read.
    fn timeout(&self, read_inotify: bool) -> Option<Instant> {
        let mut timeout = self.due.peek().map(|r| r.0 .0);
        let soon = |t: Option<Instant>, after| {
            let at = Instant::now() + after;
            Some(t.map_or(at, |t: Instant| t.min(at)))
        };
        if !self.out.is_empty() {
            timeout = soon(timeout, std::time::Duration::from_millis(5));
        }
        if self.streaming && read_inotify {
            timeout = soon(timeout, LINGER);
        }
        if read_inotify && self.out.is_empty() && self.watches.values().any(|w| w.has_more()) {
            // A log watch has more to read and the engine has room: round again at once.
            // (While it has none, `room_made` wakes the thread, or the 5 ms above.)
            timeout = soon(timeout, std::time::Duration::ZERO);
        }
        timeout
    }

    /// Adds and removes tenants; false when the hub is gone.
    fn take_commands(&mut self, rx: &mpsc::Receiver<Command>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(Command::Add(id, mut state, done)) => {
                    state.arm(&mut self.cx(id));
                    schedule(&mut self.due, &mut state, id);
                    self.watches.insert(id, state);
                    let _ = done.send(());
                }
                Ok(Command::Remove(id, done)) => {
                    if let Some(mut w) = self.watches.remove(&id) {
                        w.disarm(&mut self.cx(id));
                    }
                    self.out.retain(|(w, _)| *w != id);
                    let _ = done.send(());
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Reads what the kernel has; false when inotify cannot be read. Everything that
    /// happened before the read started is in what it returns, unless the queue
    /// overflowed; a read that emptied the queue with no overflow moves `drained` there.
    fn read(&mut self, buf: &mut [u8], raws: &mut Vec<Raw>, woke: Instant) -> bool {
        let read_started = SystemTime::now();
        if let Err(e) = self.inotify.read(buf, raws) {
            tracing::error!(error = %e, "cannot read inotify; file watches are deaf");
            return false;
        }
        let emptied = raws.len() < READ_BATCH;
        if raws.is_empty() {
            self.streaming = false;
        } else {
            self.streaming = self.streaming || woke - self.last_events < STREAM;
            self.last_events = woke;
        }
        let overflowed = raws.iter().any(|r| r.is(libc::IN_Q_OVERFLOW));
        if emptied && !overflowed {
            self.drained = read_started;
        }
        true
    }

    /// Hands each raw event to the tenants of its descriptor (an overflow to all).
    fn dispatch(&mut self, raws: &mut Vec<Raw>) {
        let now = Instant::now();
        for raw in raws.drain(..) {
            if raw.is(libc::IN_Q_OVERFLOW) {
                let ids: Vec<u64> = self.watches.keys().copied().collect();
                for id in ids {
                    self.with(id, |w, cx| w.overflow(cx));
                }
                continue;
            }
            let users = self.inotify.users.get(&raw.wd).cloned().unwrap_or_default();
            if raw.is(libc::IN_IGNORED) {
                self.inotify.forget(raw.wd);
            }
            for id in users {
                self.with(id, |w, cx| w.on_raw(&raw, now, cx));
            }
        }
    }

    /// Runs `f` on tenant `id`, then takes its next deadline.
    fn with(&mut self, id: u64, f: impl FnOnce(&mut Box<dyn Tenant>, &mut Cx<'_>)) {
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        f(
            w,
            &mut Cx::new(id, &mut self.inotify, &mut self.out, self.drained),
        );
        schedule(&mut self.due, w, id);
    }

    /// The tenants' deadlines that are due.
    fn flush_due(&mut self) {
        let now = Instant::now();
        while let Some(std::cmp::Reverse((at, id))) = self.due.peek().copied() {
            if at > now {
                break;
            }
            self.due.pop();
            self.with(id, |w, cx| w.flush_due(now, cx));
        }
    }

    /// Log watches read on while the engine has room.
    fn pump(&mut self) {
        let ids: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.has_more())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if self.out.len() >= OUT_MAX {
                break;
            }
            // A pump may set a deadline of its own (a retry for a descriptor, a sweep).
            self.with(id, |w, cx| w.pump(cx));
        }
    }
}

/// Hands waiting events to the engine, in order, as far as it has room.
fn hand_over(out: &mut VecDeque<(u64, Event)>, watches: &mut HashMap<u64, Box<dyn Tenant>>) {
    use tokio::sync::mpsc::error::TrySendError;
    while let Some((id, ev)) = out.pop_front() {
        let Some(w) = watches.get_mut(&id) else {
            continue;
        };
        match w.events().try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) => {
                out.push_front((id, ev));
                return;
            }
            Err(TrySendError::Closed(_)) => w.close(),
        }
    }
}

/// Puts a watch's next deadline in the heap, unless an entry for it is already due by
/// then.
fn schedule(
    due: &mut BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    w: &mut Box<dyn Tenant>,
    id: u64,
) {
    if let Some(t) = w.next_wakeup() {
        if w.scheduled().is_none_or(|s| t < s) {
            *w.scheduled() = Some(t);
            due.push(std::cmp::Reverse((t, id)));
        }
    }
}

/// Waits for inotify or the eventfd to be readable, or for `until`. False if polling
/// itself fails for good.
fn wait(inotify: &OwnedFd, wake: &OwnedFd, until: Option<Instant>, with_inotify: bool) -> bool {
    let timeout = match until {
        None => -1,
        Some(t) => {
            let left = t.saturating_duration_since(Instant::now());
            // Rounded up: waking a millisecond early would spin.
            i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        }
    };
    let mut fds = [
        libc::pollfd {
            // While the engine is behind, inotify is left alone (a negative fd is skipped).
            fd: if with_inotify {
                inotify.as_raw_fd()
            } else {
                -1
            },
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: poll reads and writes the two pollfds we own.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if rc >= 0 {
            break;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
    if fds[1].revents & libc::POLLIN != 0 {
        let mut v = 0u64;
        // SAFETY: read 8 bytes into a u64 from our eventfd.
        unsafe {
            libc::read(wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8);
        }
    }
    true
}
