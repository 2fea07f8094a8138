//! Who may use the control socket, whatever its file mode says: root, the daemon's own
//! user, and members of `[daemon] control_group` (by the connecting process's group or
//! one of its supplementary groups). The kernel says who connected (`SO_PEERCRED`);
//! nobody can claim to be someone else.

/// The connecting process, as the kernel gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// `None` when the process is in a PID namespace hark cannot see into.
    pub pid: Option<i32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        Ok(())
    }
}

/// Who asked: a process on the control socket, or a token or user of the HTTP listener
/// (its name and the client's address). What changes something is logged with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Socket(Peer),
    Http {
        /// `token NAME` or `user NAME`.
        name: String,
        from: std::net::SocketAddr,
    },
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Socket(p) => write!(f, "{p} (control socket)"),
            Caller::Http { name, from } => write!(f, "{name} from {from}"),
        }
    }
}

/// Whether `peer` may ask anything of the daemon, which runs as `own_uid`; `group` is
/// `control_group`'s id when one is set.
pub fn allowed(peer: &Peer, own_uid: u32, group: Option<u32>) -> bool {
    if peer.uid == 0 || peer.uid == own_uid {
        return true;
    }
    let Some(group) = group else {
        return false;
    };
    peer.gid == group
        || peer
            .pid
            .is_some_and(|pid| supplementary(pid).contains(&group))
}

/// The supplementary groups of a process (`Groups:` in /proc/PID/status); none if it
/// cannot be read (the process gone already).
fn supplementary(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    groups_line(&status)
}

fn groups_line(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn root_the_daemons_user_and_the_group_only() {
        assert!(allowed(&peer(0, 0), 0, None));
        assert!(allowed(&peer(0, 5), 990, None));
        assert!(allowed(&peer(990, 990), 990, None));
        assert!(!allowed(&peer(1000, 1000), 0, None));
        assert!(allowed(&peer(1000, 42), 0, Some(42)));
        assert!(!allowed(&peer(1000, 1000), 0, Some(42)));
    }

    #[test]
    fn supplementary_groups_are_read_from_the_status_line() {
        let status = "Name:\tx\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 42 \nNgid:\t0\n";
        assert_eq!(groups_line(status), [4, 24, 42]);
        assert_eq!(groups_line("Name:\tx\n"), Vec::<u32>::new());
        assert_eq!(groups_line("Groups:\n"), Vec::<u32>::new());
        // This process's own groups are readable, so a client in the group by a
        // supplementary group only is let in.
        let me = Peer {
            uid: 12345,
            gid: 12345,
            pid: Some(std::process::id() as i32),
        };
        let mine = supplementary(std::process::id() as i32);
        if let Some(g) = mine.first() {
            assert!(allowed(&me, 0, Some(*g)));
        }
    }
}
