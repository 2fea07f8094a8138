//! Reading /proc: only the files a process watch needs, one read each. Every function
//! takes a process that may vanish at any moment; vanishing is an `Err`/`None`, never a
//! panic.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// What /proc/PID/stat says, the fields a process watch uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// The kernel's process name (at most 15 bytes).
    pub comm: String,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    /// User + system time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Clock ticks after boot: with the pid, it names one process (pids are reused).
    pub start_ticks: u64,
    pub rss_pages: u64,
    /// For a zombie: its wait status (exit code << 8, or the signal), since Linux 3.5.
    pub exit_status: Option<i32>,
}

impl Stat {
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of /proc/PID/stat. The name is in parentheses and may itself contain
/// spaces and parentheses, so the fields after it are found from the last `)`. Written
/// for a pass over thousands of processes: no allocation but the name.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut state = None;
    let (mut utime, mut stime, mut threads, mut start, mut rss) = (None, None, None, None, None);
    let mut exit_status = None;
    // Field 3 (the state) is the first after the name.
    for (i, field) in text.get(close + 1..)?.split_ascii_whitespace().enumerate() {
        let n = i + 3;
        match n {
            3 => state = field.chars().next(),
            14 => utime = field.parse::<u64>().ok(),
            15 => stime = field.parse::<u64>().ok(),
            20 => threads = field.parse::<u64>().ok(),
            22 => start = field.parse::<u64>().ok(),
            24 => rss = field.parse::<u64>().ok(),
            52 => exit_status = field.parse::<i32>().ok(),
            _ => {}
        }
    }
    Some(Stat {
        pid,
        comm,
        state: state?,
        cpu_ticks: utime? + stime?,
        threads: threads?,
        start_ticks: start?,
        rss_pages: rss?,
        exit_status,
    })
}

/// Reads /proc/PID/stat with one `read` into a stack buffer (the line is well under
/// 1 KiB), skipping the size query and allocations of `read_to_string`.
pub fn read_stat(pid: i32) -> io::Result<Stat> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat"))?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    // The line ends with a newline; usually one read returns all of it.
    while len < buf.len() && (len == 0 || buf[len - 1] != b'\n') {
        let n = file.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    // A process may name itself with any bytes.
    let text = String::from_utf8_lossy(&buf[..len]);
    parse_stat(&text).ok_or_else(|| io::Error::other("unreadable /proc/PID/stat"))
}

/// Every pid in /proc (processes, not threads).
pub fn list_pids() -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// The command line, arguments joined by spaces (empty for kernel threads).
/// At most this much of a command line is read: it goes into events, logs and payloads.
pub const CMDLINE_MAX: u64 = 4096;

pub fn read_cmdline(pid: i32) -> Option<String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(format!("/proc/{pid}/cmdline"))
        .ok()?
        .take(CMDLINE_MAX)
        .read_to_end(&mut bytes)
        .ok()?;
    let args: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// The file name of the executable (readable for every process by root).
pub fn exe_name(pid: i32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = target.file_name()?.to_string_lossy().into_owned();
    Some(name.trim_end_matches(" (deleted)").to_string())
}

/// The owner of /proc/PID: the process's effective user.
pub fn uid(pid: i32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

pub fn clock_ticks() -> u64 {
    static T: OnceLock<u64> = OnceLock::new();
    // SAFETY: sysconf has no memory effects.
    *T.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100))
}

pub fn page_size() -> u64 {
    static P: OnceLock<u64> = OnceLock::new();
    // SAFETY: as above.
    *P.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096))
}

/// Seconds the system has been up.
pub fn uptime() -> Option<Duration> {
    // The clock /proc/uptime and the start times in /proc/PID/stat count on (time since
    // boot, suspend included), read without a file: no system call, through the vDSO.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

/// How long ago a process started, from its start time in ticks after boot.
pub fn age(start_ticks: u64, uptime: Duration) -> Duration {
    uptime.saturating_sub(Duration::from_secs_f64(
        start_ticks as f64 / clock_ticks() as f64,
    ))
}

/// When a process started, on the wall clock.
pub fn started_at(start_ticks: u64, uptime: Duration) -> SystemTime {
    SystemTime::now() - age(start_ticks, uptime)
}

/// A pid file's pid, and when the file was last written.
/// A FIFO, a device or a huge file in its place is no pid file: read without blocking, at
/// most 4 KiB.
pub fn read_pidfile(path: &Path) -> Option<(i32, SystemTime)> {
    let file = crate::fsread::open_regular(path).ok()?;
    let modified = file.metadata().ok()?.modified().ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, PIDFILE_MAX), &mut text).ok()?;
    let pid: i32 = text.split_whitespace().next()?.parse().ok()?;
    (pid > 0).then_some((pid, modified))
}

/// What of a pid file is read: a pid and a newline, with room for odd formats.
const PIDFILE_MAX: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_parses() {
        let mut text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 2 0 123456 1000000 250".to_string();
        // Fields 25..=51, then the exit status as field 52.
        for _ in 25..=51 {
            text.push_str(" 0");
        }
        text.push_str(" 9\n");
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (odd) name");
        assert_eq!(s.state, 'S');
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.threads, 2);
        assert_eq!(s.start_ticks, 123456);
        assert_eq!(s.rss_pages, 250);
        assert_eq!(s.exit_status, Some(9));
    }

    #[test]
    fn garbage_is_not_a_stat() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat("12 (x) S"), None);
    }

    #[test]
    fn this_process_reads_as_alive() {
        let s = read_stat(std::process::id() as i32).unwrap();
        assert!(!s.is_dead());
        assert!(s.threads >= 1);
        assert!(list_pids().unwrap().contains(&(std::process::id() as i32)));
    }

    #[test]
    fn a_vanished_process_is_an_error_not_a_panic() {
        // Pids above pid_max (at most 2^22) never exist.
        assert!(read_stat(i32::MAX).is_err());
        assert_eq!(read_cmdline(i32::MAX), None);
        assert_eq!(exe_name(i32::MAX), None);
        assert_eq!(uid(i32::MAX), None);
    }
}
