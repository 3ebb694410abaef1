//! `groups.NAME.discovery`: servers from DNS (every A/AAAA record of `dns`
//! is a server, weight 1, id `ip:port`), re-resolved every `interval`
//! (Envoy's `STRICT_DNS` cluster, nginx plus `server ... resolve`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::validate::Errors;
use super::Spanned;

/// Default re-resolution interval (CONFIG.md: 5s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The raw `discovery` section of a group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    /// `name:port`: every A/AAAA record of `name` is a server on `port`.
    pub dns: Spanned<String>,
    /// How often `dns` is re-resolved (default `5s`).
    pub interval: Option<Spanned<String>>,
    /// `ip:port` of the DNS server to ask; absent = the system's resolver
    /// configuration (`/etc/resolv.conf`).
    pub resolver: Option<Spanned<String>>,
    /// Weight ramp of a discovered server that joins (like
    /// `servers[].slow_start`); absent = none.
    pub slow_start: Option<Spanned<String>>,
}

/// A validated `discovery` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The name to resolve, as written.
    pub name: String,
    /// The port of every discovered server.
    pub port: u16,
    /// Re-resolution interval.
    pub interval: Duration,
    /// The DNS server to ask; `None` = system configuration.
    pub resolver: Option<SocketAddr>,
    /// Slow-start ramp of a server that joins; `None` = none.
    pub slow_start: Option<Duration>,
}

fn duration(d: &Spanned<String>, key: String, errs: &mut Errors) -> Option<Duration> {
    super::units::positive(d, key, "1s or 500ms", errs)
}

/// Validates `groups.NAME.discovery` (`key` = `groups.NAME`).
pub(super) fn discovery(
    raw: &RawDiscovery,
    key: &str,
    errs: &mut Errors,
) -> Option<DiscoveryConfig> {
    let key = format!("{key}.discovery");
    let before = errs.list.len();
    let dns = raw.dns.value.trim();
    let parsed = dns.rsplit_once(':').and_then(|(name, port)| {
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        ok.then(|| (name.to_string(), port))
    });
    if parsed.is_none() {
        errs.at(
            Some(&raw.dns.referenced),
            format!("{key}.dns"),
            format!("{dns:?} is not name:port (a DNS name and a port 1-65535)"),
        );
    }
    let interval = match &raw.interval {
        Some(i) => duration(i, format!("{key}.interval"), errs),
        None => Some(DEFAULT_INTERVAL),
    };
    let resolver = raw
        .resolver
        .as_ref()
        .and_then(|r| match r.value.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.at(
                    Some(&r.referenced),
                    format!("{key}.resolver"),
                    format!("{:?} is not ip:port (e.g. 127.0.0.1:53)", r.value),
                );
                None
            }
        });
    let slow_start = raw
        .slow_start
        .as_ref()
        .and_then(|s| duration(s, format!("{key}.slow_start"), errs));
    if errs.list.len() > before {
        return None;
    }
    let (name, port) = parsed?;
    Some(DiscoveryConfig {
        name,
        port,
        interval: interval?,
        resolver,
        slow_start,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn load(discovery: &str, servers: &str) -> Result<crate::Config, String> {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    discovery:\n{discovery}    servers: {servers}\n"
        );
        crate::config::load_str(&yaml, Path::new("t.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_and_allows_empty_servers() {
        let c = load(
            "      dns: api.test:8080\n      interval: 200ms\n      resolver: 127.0.0.1:5353\n      slow_start: 2s\n",
            "[]",
        )
        .unwrap();
        let d = c.groups[0].discovery.clone().unwrap();
        assert_eq!(d.name, "api.test");
        assert_eq!(d.port, 8080);
        assert_eq!(d.interval, std::time::Duration::from_millis(200));
        assert_eq!(d.resolver, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(d.slow_start, Some(std::time::Duration::from_secs(2)));
        assert!(c.groups[0].servers.is_empty());
        let c = load("      dns: api.test:80\n", "[]").unwrap();
        assert_eq!(
            c.groups[0].discovery.as_ref().unwrap().interval,
            super::DEFAULT_INTERVAL
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("      dns: api.test\n", "[]").unwrap_err();
        assert!(e.contains("groups.g.discovery.dns:"), "{e}");
        let e = load("      dns: a:1\n      interval: 0s\n", "[]").unwrap_err();
        assert!(e.contains("groups.g.discovery.interval:"), "{e}");
        let e = load("      dns: a:1\n      resolver: localhost\n", "[]").unwrap_err();
        assert!(e.contains("groups.g.discovery.resolver:"), "{e}");
        let e = load("      dns: a:1\n      bogus: 1\n", "[]").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn empty_servers_without_discovery_is_an_error() {
        let yaml = "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    servers: []\n";
        let e = crate::config::load_str(yaml, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups.g.servers"), "{e}");
    }
}
