//! The clock of the daemon's periodic work (checks, process passes, the runtime sampler):
//! one timerfd armed at the earliest instant any of them waits for. Why not tokio's
//! timers: its wheel wakes the daemon at each level's slot boundary to move a timer down
//! (for a 1 s timer, ~50 ms before it fires: a second wake-up each second, more for 5 s
//! and 30 s timers), and every wake-up of an idle daemon costs it the pages it touches
//! (docs/benchmarks.md, idle footprint). A timerfd wakes the daemon once, at the instant.
//! A wait may also be a window (`sleep_between`): it ends with the first wake-up the
//! clock makes anyway inside it, so work that need not be exact rides along with checks.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::unix::AsyncFd;

/// The clock; clones share it. Where a timerfd cannot be made, waits fall back to
/// tokio's timers (said once in the log).
#[derive(Clone)]
pub struct Clock(Arc<Inner>);

struct Inner {
    /// None: tokio's timers are used.
    fd: Option<OwnedFd>,
    driving: AtomicBool,
    state: Mutex<State>,
    /// Told when the instant to wake at changes (for a driver left without the timerfd).
    rearmed: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    next_id: u64,
    slots: HashMap<u64, Slot>,
    /// Every wait by the instant it must end at.
    by_end: BTreeSet<(Instant, u64)>,
    /// Windows by the instant from which they may end.
    by_start: BTreeSet<(Instant, u64)>,
    /// What the timerfd is set to.
    armed: Option<Instant>,
}

struct Slot {
    start: Instant,
    end: Instant,
    waker: Waker,
    /// The instant the clock woke for, once it has woken this wait.
    woken_for: Option<Instant>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new fd we own.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        let fd = if raw >= 0 {
            // SAFETY: `raw` is a valid fd that nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(raw) })
        } else {
            tracing::warn!(error = %io::Error::last_os_error(), "no timerfd for the periodic checks; they use the runtime's timers");
            None
        };
        Clock(Arc::new(Inner {
            fd,
            driving: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            rearmed: tokio::sync::Notify::new(),
        }))
    }

    /// Ends at `at` (at once if it is past); yields the instant it was due at.
    pub fn sleep_until(&self, at: Instant) -> Sleep {
        self.sleep_between(at, at)
    }

    /// Ends with the first wake-up of the clock at or after `start`, at `end` at the
    /// latest; yields the instant the clock woke for.
    pub fn sleep_between(&self, start: Instant, end: Instant) -> Sleep {
        let start = start.min(end);
        match self.0.fd {
            Some(_) => Sleep(Wait::Clock {
                clock: Arc::clone(&self.0),
                start,
                end,
                id: None,
            }),
            None => Sleep(Wait::Tokio {
                end,
                sleep: Box::pin(tokio::time::sleep_until(end.into())),
            }),
        }
    }
}

/// A wait on the clock.
pub struct Sleep(Wait);

enum Wait {
    Clock {
        clock: Arc<Inner>,
        start: Instant,
        end: Instant,
        id: Option<u64>,
    },
    Tokio {
        end: Instant,
        sleep: Pin<Box<tokio::time::Sleep>>,
    },
}

impl Future for Sleep {
    type Output = Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        match &mut self.get_mut().0 {
            Wait::Tokio { end, sleep } => sleep.as_mut().poll(cx).map(|()| *end),
            Wait::Clock {
                clock,
                start,
                end,
                id,
            } => {
                let mut s = lock(&clock.state);
                match id {
                    Some(i) => {
                        let Some(slot) = s.slots.get_mut(i) else {
                            return Poll::Ready(*end);
                        };
                        if let Some(at) = slot.woken_for {
                            s.slots.remove(i);
                            *id = None;
                            return Poll::Ready(at);
                        }
                        if !slot.waker.will_wake(cx.waker()) {
                            slot.waker = cx.waker().clone();
                        }
                        Poll::Pending
                    }
                    None => {
                        if Instant::now() >= *end {
                            return Poll::Ready(*end);
                        }
                        let i = s.next_id;
                        s.next_id += 1;
                        s.slots.insert(
                            i,
                            Slot {
                                start: *start,
                                end: *end,
                                waker: cx.waker().clone(),
                                woken_for: None,
                            },
                        );
                        s.by_end.insert((*end, i));
                        if start < end {
                            s.by_start.insert((*start, i));
                        }
                        *id = Some(i);
                        if s.armed.is_none_or(|a| *end < a) {
                            s.armed = Some(*end);
                            clock.arm(*end);
                        }
                        drop(s);
                        if !clock.driving.swap(true, Ordering::AcqRel) {
                            tokio::spawn(drive(Arc::clone(clock)));
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Wait::Clock {
            clock, id: Some(i), ..
        } = &mut self.0
        {
            let mut s = lock(&clock.state);
            if let Some(slot) = s.slots.remove(i) {
                s.by_end.remove(&(slot.end, *i));
                s.by_start.remove(&(slot.start, *i));
            }
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// Sets the timerfd to go off at `at` (CLOCK_MONOTONIC, the clock `Instant` reads).
    fn arm(&self, at: Instant) {
        self.rearmed.notify_one();
        let Some(fd) = &self.fd else { return };
        let now = Instant::now();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write to.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        // Read after `now`: the instant set is never before `at`, so the wake-up finds it due.
        let ns = ts.tv_sec as i128 * 1_000_000_000
            + ts.tv_nsec as i128
            + at.saturating_duration_since(now).as_nanos() as i128;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        let r = unsafe {
            libc::timerfd_settime(
                fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "could not set the periodic checks' timer");
        }
    }

    /// Wakes the waits that are due at `now`, and the windows open at `now` if any was.
    fn fire(&self, now: Instant) {
        let mut wake = Vec::new();
        let mut s = lock(&self.state);
        let mut first = None;
        while let Some(&(end, i)) = s.by_end.first() {
            if end > now {
                break;
            }
            s.by_end.pop_first();
            first.get_or_insert(end);
            if let Some(slot) = s.slots.get_mut(&i) {
                // Each due wait yields its own instant; windows opened by this wake-up
                // yield the first (below).
                slot.woken_for = Some(end);
                let start = slot.start;
                wake.push(slot.waker.clone());
                s.by_start.remove(&(start, i));
            }
        }
        if let Some(for_) = first {
            while let Some(&(start, i)) = s.by_start.first() {
                if start > now {
                    break;
                }
                s.by_start.pop_first();
                if let Some(slot) = s.slots.get_mut(&i) {
                    slot.woken_for = Some(for_);
                    let end = slot.end;
                    wake.push(slot.waker.clone());
                    s.by_end.remove(&(end, i));
                }
            }
        }
        // Set again after every wake-up: the timerfd goes off once per setting.
        let next = s.by_end.first().map(|(at, _)| *at);
        s.armed = next;
        if let Some(at) = next {
            self.arm(at);
        }
        drop(s);
        for w in wake {
            w.wake();
        }
    }
}

/// Waits for the timerfd and wakes what is due, for as long as the runtime runs; without
/// it (it cannot be waited for), a runtime timer at the armed instant does the same.
async fn drive(clock: Arc<Inner>) {
    if let Err(e) = drive_timerfd(&clock).await {
        tracing::error!(error = %e, "cannot wait for the periodic checks' timer; they use the runtime's timers");
    }
    drive_by_runtime(&clock).await;
}

async fn drive_by_runtime(clock: &Inner) {
    loop {
        let armed = lock(&clock.state).armed;
        match armed {
            Some(at) => tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => clock.fire(Instant::now()),
                _ = clock.rearmed.notified() => {}
            },
            None => clock.rearmed.notified().await,
        }
    }
}

async fn drive_timerfd(clock: &Inner) -> io::Result<()> {
    let fd = match &clock.fd {
        Some(f) => f.try_clone()?,
        None => return Err(io::Error::other("no timerfd")),
    };
    // SAFETY: `fd` is an fd of our own (a dup of the timerfd), open for as long as `afd`
    // lives, since `afd` owns it.
    let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
    loop {
        let mut guard = afd.readable().await?;
        let mut expirations = [0u8; 8];
        let read = guard.try_io(|fd| {
            // SAFETY: reads at most 8 bytes into a buffer of 8.
            let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        if read.is_ok() {
            clock.fire(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_end_at_their_instant_and_in_order() {
        let clock = Clock::new();
        let t0 = Instant::now();
        let a = clock.sleep_until(t0 + Duration::from_millis(60));
        let b = clock.sleep_until(t0 + Duration::from_millis(20));
        let (fa, fb) = tokio::join!(
            async {
                let f = a.await;
                (f, Instant::now())
            },
            async {
                let f = b.await;
                (f, Instant::now())
            }
        );
        assert_eq!(fb.0, t0 + Duration::from_millis(20));
        assert_eq!(fa.0, t0 + Duration::from_millis(60));
        assert!(fb.1 >= fb.0 && fa.1 >= fa.0, "never early");
        assert!(fb.1 < fa.1);
        // A wait in the past ends at once.
        assert_eq!(clock.sleep_until(t0).await, t0);
    }

    #[tokio::test]
    async fn a_window_rides_along_with_a_wake_up_inside_it_or_ends_at_its_end() {
        let clock = Clock::new();
        let t0 = Instant::now();
        let check = t0 + Duration::from_millis(40);
        let window =
            clock.sleep_between(t0 + Duration::from_millis(10), t0 + Duration::from_secs(30));
        let (w, c) = tokio::join!(window, clock.sleep_until(check));
        assert_eq!((w, c), (check, check));
        // Nothing else inside it: it ends at its end.
        let end = Instant::now() + Duration::from_millis(30);
        let alone = clock.sleep_between(Instant::now(), end).await;
        assert_eq!(alone, end);
        assert!(Instant::now() >= end);
        // A wake-up before the window opens does not end it.
        let t1 = Instant::now();
        let early = t1 + Duration::from_millis(10);
        let w_end = t1 + Duration::from_millis(80);
        let (c, w) = tokio::join!(
            clock.sleep_until(early),
            clock.sleep_between(t1 + Duration::from_millis(40), w_end)
        );
        assert_eq!((c, w), (early, w_end));
    }

    #[tokio::test]
    async fn without_the_timerfd_a_runtime_timer_drives_the_same_waits() {
        let clock = Clock::new();
        // The timerfd is set but nobody reads it: as when it cannot be waited for.
        clock.0.driving.store(true, Ordering::Release);
        let inner = Arc::clone(&clock.0);
        tokio::spawn(async move { drive_by_runtime(&inner).await });
        let t0 = Instant::now();
        let late = clock.sleep_until(t0 + Duration::from_millis(60));
        let early = clock.sleep_until(t0 + Duration::from_millis(20));
        // Bounded: without a driver the waits would never end.
        let both =
            tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(late, early) });
        assert_eq!(
            both.await.ok(),
            Some((
                t0 + Duration::from_millis(60),
                t0 + Duration::from_millis(20)
            ))
        );
    }

    #[tokio::test]
    async fn a_dropped_wait_is_forgotten() {
        let clock = Clock::new();
        let t0 = Instant::now();
        let gone = clock.sleep_until(t0 + Duration::from_millis(10));
        let _ = tokio::time::timeout(Duration::from_millis(1), gone).await;
        let kept = clock.sleep_until(t0 + Duration::from_millis(30)).await;
        assert_eq!(kept, t0 + Duration::from_millis(30));
        let s = lock(&clock.0.state);
        assert!(s.slots.is_empty() && s.by_end.is_empty() && s.by_start.is_empty());
    }
}
