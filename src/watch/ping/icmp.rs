//! ICMP echo sockets and packets. An unprivileged "ping socket" (`SOCK_DGRAM`,
//! `IPPROTO_ICMP`) where `net.ipv4.ping_group_range` includes hark's group: the kernel
//! picks the identifier and hands this socket only its own replies. Else a raw socket
//! (root or CAP_NET_RAW), which sees every echo reply: ours are told by identifier and a
//! marker in the payload.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The receive buffer asked for (the kernel caps it at net.core.rmem_max).
const RECV_BUFFER: usize = 4 << 20;

/// Bytes of payload after the 8-byte header, as ping(8) sends by default.
const PAYLOAD: usize = 56;

pub struct Icmp {
    fd: AsyncFd<Socket>,
    raw: bool,
    v6: bool,
    /// The identifier of a raw socket's requests (a ping socket's is the kernel's).
    ident: u16,
    /// Marks our requests' payloads (a raw socket hears other programs' replies too).
    marker: u64,
}

/// A reply: its sequence number, and who sent it.
pub struct Reply {
    pub seq: u16,
    pub from: IpAddr,
}

impl Icmp {
    pub fn open(v6: bool) -> Result<Icmp, String> {
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(s) => (s, false),
            // Not allowed a ping socket: a raw one, if hark may.
            Err(dgram) if denied(&dgram) => match Socket::new(domain, Type::RAW, Some(protocol)) {
                Ok(s) => (s, true),
                Err(raw) if denied(&raw) => return Err(no_socket(&dgram, &raw)),
                Err(raw) => return Err(format!("cannot open a raw ICMP socket: {raw}")),
            },
            // Out of descriptors, no IPv6, ...: what the kernel said.
            Err(dgram) => return Err(format!("cannot open an ICMP socket: {dgram}")),
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("ICMP socket: {e}"))?;
        // Replies of many targets come in bursts (a phase group of watches, `hark test`'s
        // all at once): room for them, as far as net.core.rmem_max allows.
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
        // SAFETY: the Socket moves into the AsyncFd and stays open, unchanged, for as long
        // as the AsyncFd lives; its raw fd is always the same.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| format!("ICMP socket: {e}"))?;
        Ok(Icmp {
            fd,
            raw,
            v6,
            ident: (std::process::id() & 0xffff) as u16,
            marker: fastrand::u64(..),
        })
    }

    /// Sends echo request `seq` to `to`.
    pub fn send(&self, to: IpAddr, seq: u16) -> io::Result<()> {
        let mut p = vec![0u8; 8 + PAYLOAD];
        p[0] = if self.v6 { 128 } else { 8 };
        p[4..6].copy_from_slice(&self.ident.to_be_bytes());
        p[6..8].copy_from_slice(&seq.to_be_bytes());
        p[8..16].copy_from_slice(&self.marker.to_be_bytes());
        if !self.v6 {
            // ICMPv6's checksum covers a pseudo-header: the kernel computes it.
            let sum = checksum(&p);
            p[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        let to = SockAddr::from(SocketAddr::new(to, 0));
        self.fd.get_ref().send_to(&p, &to).map(|_| ())
    }

    /// Waits until replies may be read.
    pub async fn readable(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// The next reply of ours waiting on the socket, skipping what is not one; `None`
    /// when none is left.
    pub fn next_reply(&self) -> Option<Reply> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        loop {
            let (n, from) = match self.fd.get_ref().recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            // SAFETY: recv_from initialised the first `n` bytes.
            let bytes: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let Some(from) = from.as_socket().map(|a| a.ip()) else {
                continue;
            };
            if let Some(seq) = self.ours(&bytes) {
                return Some(Reply { seq, from });
            }
        }
    }

    /// The sequence number of an echo reply to one of our requests.
    fn ours(&self, bytes: &[u8]) -> Option<u16> {
        // A raw IPv4 socket gets the IP header too.
        let icmp = if self.raw && !self.v6 {
            let ihl = usize::from(bytes.first()? & 0x0f) * 4;
            bytes.get(ihl..)?
        } else {
            bytes
        };
        let reply_type = if self.v6 { 129 } else { 0 };
        if icmp.len() < 16 || icmp[0] != reply_type || icmp[1] != 0 {
            return None;
        }
        let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
        let marker = u64::from_be_bytes(icmp[8..16].try_into().ok()?);
        if marker != self.marker || (self.raw && ident != self.ident) {
            return None;
        }
        Some(u16::from_be_bytes([icmp[6], icmp[7]]))
    }
}

fn denied(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// Why neither socket could be opened, naming what to change.
fn no_socket(dgram: &io::Error, raw: &io::Error) -> String {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    // SAFETY: getegid(2) cannot fail.
    let gid = unsafe { libc::getegid() };
    format!(
        "cannot open an ICMP socket: unprivileged ping sockets are not allowed for group {gid} \
         (net.ipv4.ping_group_range = \"{range}\": {dgram}) and raw sockets need root or \
         CAP_NET_RAW ({raw}); allow the group, e.g. `sysctl net.ipv4.ping_group_range=\"0 2147483647\"`"
    )
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // An echo request, id 1, seq 1, no payload: 0x08 0x00 [sum] 0x00 0x01 0x00 0x01.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
        // A packet with its checksum in place sums to zero.
        let mut p = vec![8, 0, 0, 0, 0x12, 0x34, 0, 7, 1, 2, 3];
        let s = checksum(&p);
        p[2..4].copy_from_slice(&s.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }
}
