//! What the daemon gives back once it is running. Starting touches code and data that
//! are never used again (parsing the configuration, compiling CEL, opening the store,
//! setting up every watch), and the kernel maps the executable's pages 64 KiB around
//! each fault ("fault-around"): an idle hark kept about 9 MiB of its executable mapped,
//! of which its steady work uses about a third. After the start, the executable's code
//! and read-only data are unmapped (they come back from the page cache when used, still
//! 64 KiB around each fault where the page cache holds them: `MADV_RANDOM` only stops
//! read-ahead where it does not) and the allocator returns the memory the start freed.
//! The first round of work after the start (a first connection to each HTTP target, the
//! first full pass over /proc, the first sample of the runtime) runs code the steady
//! state does not: the same is done once more when every watch has made its first check
//! (`again_after`). Measured in docs/benchmarks.md (idle footprint); the code an idle
//! daemon runs is packed together at link time (build.rs).

use std::time::Duration;

/// When the executable's pages are given back a second time, after a start or a reload
/// that set up watches checking at most every `longest`: once each has made its first
/// check (inside its first interval), at least 10 s and at most 10 minutes on.
pub fn again_after(longest: Option<Duration>) -> Duration {
    let first_round = longest.unwrap_or_default() + Duration::from_secs(5);
    first_round.clamp(Duration::from_secs(10), Duration::from_secs(600))
}

/// Gives back once more, `after` from now, on the current runtime.
pub fn give_back_again_later(after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        give_back_start_up();
    });
}

/// Unmaps the executable's read-only mappings that hold no private copy of a page, and
/// trims the heap. Linux only; errors are ignored (nothing depends on it).
pub fn give_back_start_up() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let exe = exe.to_string_lossy();
    for m in mappings(&smaps) {
        // Only read-only or executable mappings of our own file, and only those with no
        // anonymous (copied-on-write: relocated) page: dropping such a page would lose
        // what was written into it.
        if m.path != exe || m.perms.contains('w') || m.anonymous_kib != 0 {
            continue;
        }
        let len = m.end - m.start;
        // SAFETY: the range is a whole mapping of the executable, read-only and without
        // private pages: MADV_DONTNEED drops its page-table entries and the next access
        // reads the same bytes from the page cache again. MADV_RANDOM only changes how
        // much is read ahead per fault.
        unsafe {
            libc::madvise(m.start as *mut libc::c_void, len, libc::MADV_RANDOM);
            libc::madvise(m.start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[derive(Debug, PartialEq)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    path: &'a str,
    anonymous_kib: u64,
}

/// The mappings of a /proc/PID/smaps text, with their `Anonymous:` size.
fn mappings(smaps: &str) -> Vec<Mapping<'_>> {
    let mut out: Vec<Mapping<'_>> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = fields.next().unwrap_or_default();
                let path = fields.nth(3).unwrap_or_default();
                out.push(Mapping {
                    start,
                    end,
                    perms,
                    path,
                    anonymous_kib: 0,
                });
                continue;
            }
        }
        if first == "Anonymous:" {
            if let (Some(m), Some(kib)) = (out.last_mut(), fields.next()) {
                m.anonymous_kib = kib.parse().unwrap_or(u64::MAX);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_give_back_waits_for_the_first_round_of_checks() {
        let s = Duration::from_secs;
        assert_eq!(again_after(None), s(10));
        assert_eq!(again_after(Some(s(1))), s(10));
        assert_eq!(again_after(Some(s(30))), s(35));
        assert_eq!(again_after(Some(s(86_400))), s(600));
    }

    #[test]
    fn mappings_are_read_with_their_anonymous_pages() {
        let smaps = "\
00400000-00800000 r--p 00000000 fe:00 42                                 /usr/bin/hark
Size:               4096 kB
Anonymous:             0 kB
00800000-00900000 r-xp 00400000 fe:00 42                                 /usr/bin/hark
Anonymous:             8 kB
7f00-7f10 rw-p 00000000 00:00 0
Anonymous:            64 kB
";
        let m = mappings(smaps);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            Mapping {
                start: 0x400000,
                end: 0x800000,
                perms: "r--p",
                path: "/usr/bin/hark",
                anonymous_kib: 0
            }
        );
        assert_eq!((m[1].perms, m[1].anonymous_kib), ("r-xp", 8));
        assert_eq!((m[2].path, m[2].anonymous_kib), ("", 64));
    }
}
