//! The wall clock the rules read: cron schedules are wall-clock times, while windows and
//! deadlines run on the monotonic clock (`Instant`). Tests, and a person trying out a
//! schedule, may start it at another time (`HARK_CLOCK_START`); it then runs at the
//! real speed from there.

use std::time::{Instant, SystemTime};

/// The wall-clock time of a monotonic instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock {
    /// An instant and the wall time it stands for; none: the system's clock.
    start: Option<(Instant, SystemTime)>,
}

/// The variable that starts the wall clock of rules at another time (RFC 3339).
pub const CLOCK_START_VAR: &str = "HARK_CLOCK_START";

impl WallClock {
    /// A clock that reads `start` at the instant `at`.
    pub fn starting(at: Instant, start: SystemTime) -> WallClock {
        WallClock {
            start: Some((at, start)),
        }
    }

    /// The system's clock, or one started at `HARK_CLOCK_START` when that is set.
    pub fn from_env() -> Result<WallClock, String> {
        let Ok(text) = std::env::var(CLOCK_START_VAR) else {
            return Ok(WallClock::default());
        };
        let ts: jiff::Timestamp = text
            .trim()
            .parse()
            .map_err(|e| format!("{CLOCK_START_VAR}={text:?} is not an RFC 3339 time: {e}"))?;
        let start = SystemTime::from(ts);
        Ok(WallClock::starting(Instant::now(), start))
    }

    /// Whether it is started at another time than the system's.
    pub fn is_shifted(&self) -> bool {
        self.start.is_some()
    }

    /// The wall-clock time at `now`.
    pub fn at(&self, now: Instant) -> SystemTime {
        match self.start {
            Some((at, start)) => match now.checked_duration_since(at) {
                Some(d) => start + d,
                None => start
                    .checked_sub(at.duration_since(now))
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            },
            None => {
                let real = Instant::now();
                match real.checked_duration_since(now) {
                    Some(d) => SystemTime::now()
                        .checked_sub(d)
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                    None => SystemTime::now() + now.duration_since(real),
                }
            }
        }
    }
}
