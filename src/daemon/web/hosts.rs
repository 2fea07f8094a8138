//! Which `Host` a loopback listener answers to (DNS rebinding).

use std::net::SocketAddr;
use std::sync::Arc;

/// Which `Host` a request may name. On a loopback address only loopback names and
/// addresses (and `http_hosts`): a page elsewhere that a browser was sent to could
/// otherwise read the status (its last log lines) through DNS rebinding, its own name
/// resolving to 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Hosts {
    loopback: bool,
    allowed: Arc<[String]>,
}

impl Hosts {
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Hosts {
        Hosts {
            loopback: listen.ip().is_loopback(),
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request with this `Host` header (absent: HTTP/1.0) is answered.
    pub fn admits(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        if !self.loopback {
            return true;
        }
        let host = host.trim().to_ascii_lowercase();
        // `name:port`, `[v6]:port`, `[v6]`, `name`.
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host.as_str(), |(n, _)| n),
        };
        let name = name.trim_end_matches('.');
        name == "localhost"
            || name.ends_with(".localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.allowed.iter().any(|a| a == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Hosts;

    #[test]
    fn a_loopback_listener_answers_loopback_names_and_its_listed_hosts_only() {
        let h = Hosts::new(
            "127.0.0.1:9797".parse().unwrap(),
            &["Status.Example.org".into()],
        );
        for ok in [
            None,
            Some("127.0.0.1:9797"),
            Some("localhost:9797"),
            Some("LOCALHOST"),
            Some("[::1]:9797"),
            Some("127.1.2.3"),
            Some("status.example.org:443"),
            Some("app.localhost"),
        ] {
            assert!(h.admits(ok), "{ok:?}");
        }
        for bad in [
            Some("evil.example:9797"),
            Some("127.0.0.1.evil.example"),
            Some("localhost.evil.example"),
            Some("10.0.0.1"),
            Some(""),
            Some("\u{0}"),
        ] {
            assert!(!h.admits(bad), "{bad:?}");
        }
        // A listener on another address is reached by whatever name its network gives it.
        let public = Hosts::new("0.0.0.0:9797".parse().unwrap(), &[]);
        assert!(public.admits(Some("evil.example")));
    }
}
