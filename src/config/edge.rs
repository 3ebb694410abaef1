//! The edge keys of issue 14: PROXY protocol in (`listeners[].proxy_protocol`)
//! and out (`groups.*.proxy_protocol`), client certificates
//! (`listeners[].tls.client_auth`), per-server limits with a group queue
//! (`servers[].max_connections`, `groups.*.queue`), backup servers and slow
//! start (`servers[].backup`, `servers[].slow_start`): raw structs,
//! validated models and their checks (hooked from `validate.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::validate::Errors;
use super::{RawGroup, RawListener, RawServer, Spanned};

/// Default longest wait for a PROXY protocol header (HAProxy's
/// `timeout client` applies there; 5 s is what AWS NLB users usually set).
pub const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `queue.max`: requests that may wait for a free server slot.
pub const DEFAULT_QUEUE_MAX: usize = 1024;

/// `listeners[].tls.client_auth`: mutual TLS towards clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    /// PEM file of the CA certificates that client certificates must chain to.
    pub ca: Spanned<PathBuf>,
    /// `true` (default) refuses the handshake without a valid certificate;
    /// `false` asks, and forwards only verified ones.
    pub required: Option<bool>,
}

/// `groups.*.queue`: the group's FIFO of requests waiting for a server slot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// Requests that may wait at once (default 1024); beyond it 503 at once.
    /// 0 = no waiting: a request finding every server full gets 503.
    pub max: Option<Spanned<usize>>,
    /// Longest wait (default: the group's `timeouts.connect`, as HAProxy's
    /// `timeout queue`); past it 503.
    pub timeout: Option<Spanned<super::HumanDuration>>,
}

/// PROXY protocol version sent to servers (`groups.*.proxy_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text header (`PROXY TCP4 … \r\n`).
    V1,
    /// The binary header.
    V2,
}

/// Validated client-certificate settings of a TLS listener.
#[derive(Debug, Clone)]
pub struct ClientAuthConfig {
    /// The trust anchors of `ca`.
    pub roots: Arc<RootCertStore>,
    /// Refuse handshakes without a valid certificate.
    pub required: bool,
}

/// Validated edge settings of a listener.
#[derive(Debug, Clone, Default)]
pub struct ListenerEdge {
    /// `proxy_protocol: true`: the deadline for the header; `None` = off.
    pub proxy_protocol: Option<Duration>,
    /// `tls.client_auth`, when set.
    pub client_auth: Option<ClientAuthConfig>,
}

/// Validated queue of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most waiting requests.
    pub max: usize,
    /// Longest wait.
    pub timeout: Duration,
}

/// Validated edge settings of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupEdge {
    /// PROXY header sent on new upstream connections.
    pub proxy_protocol: Option<ProxyVersion>,
    /// Where requests wait for a server slot.
    pub queue: QueueConfig,
}

impl Default for GroupEdge {
    fn default() -> Self {
        GroupEdge {
            proxy_protocol: None,
            queue: QueueConfig {
                max: DEFAULT_QUEUE_MAX,
                timeout: super::model::DEFAULT_CONNECT_TIMEOUT,
            },
        }
    }
}

/// Validated edge settings of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerEdge {
    /// Requests in flight at most; `None` = no limit.
    pub max_connections: Option<u64>,
    /// Used only when no primary server is usable.
    pub backup: bool,
    /// Weight ramp after the server comes up; `None` = none.
    pub slow_start: Option<Duration>,
}

/// Checks the edge keys of listener `l` (`key` = `listeners[i]`).
pub(super) fn listener(l: &RawListener, key: &str, base: &Path, errs: &mut Errors) -> ListenerEdge {
    let timeout = l
        .proxy_protocol_timeout
        .as_ref()
        .map_or(DEFAULT_PROXY_PROTOCOL_TIMEOUT, |d| d.value.0);
    if timeout.is_zero() {
        errs.at(
            Some(&l.address.referenced),
            format!("{key}.proxy_protocol_timeout"),
            "must be more than 0s",
        );
    }
    let client_auth = l
        .tls
        .as_ref()
        .and_then(|t| t.client_auth.as_ref())
        .and_then(|c| client_auth(c, &format!("{key}.tls.client_auth"), base, errs));
    ListenerEdge {
        proxy_protocol: l.proxy_protocol.unwrap_or(false).then_some(timeout),
        client_auth,
    }
}

fn client_auth(
    c: &RawClientAuth,
    key: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<ClientAuthConfig> {
    let path = base.join(&c.ca.value);
    let fail = |errs: &mut Errors, m: String| {
        errs.at(
            Some(&c.ca.referenced),
            format!("{key}.ca"),
            format!("{}: {m}", path.display()),
        );
    };
    let pem = match super::read::read_key_file(&path) {
        Ok(p) => p,
        Err(m) => {
            fail(errs, m);
            return None;
        }
    };
    let certs: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>() {
            Ok(c) => c,
            Err(e) => {
                fail(errs, format!("invalid PEM certificate: {e}"));
                return None;
            }
        };
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        fail(errs, "no usable CA certificate in the file".into());
        return None;
    }
    Some(ClientAuthConfig {
        roots: Arc::new(roots),
        required: c.required.unwrap_or(true),
    })
}

/// Checks the edge keys of group `g` (`key` = `groups.NAME`) whose servers
/// have `servers` edge settings; `connect` is the group's connect timeout.
pub(super) fn group(
    g: &RawGroup,
    key: &str,
    connect: Duration,
    servers: &[ServerEdge],
    errs: &mut Errors,
) -> GroupEdge {
    let proxy_protocol = g
        .proxy_protocol
        .as_ref()
        .and_then(|v| match v.value.as_str() {
            "v1" => Some(ProxyVersion::V1),
            "v2" => Some(ProxyVersion::V2),
            other => {
                errs.at(
                    Some(&v.referenced),
                    format!("{key}.proxy_protocol"),
                    format!("unknown version {other:?}: v1 or v2"),
                );
                None
            }
        });
    let queue = g.queue.as_ref();
    let timeout = queue
        .and_then(|q| q.timeout.as_ref())
        .map_or(connect, |d| d.value.0);
    if timeout.is_zero() {
        errs.at(
            Some(&g.servers.referenced),
            format!("{key}.queue.timeout"),
            "must be more than 0s",
        );
    }
    if !servers.is_empty() && servers.iter().all(|s| s.backup) {
        errs.at(
            Some(&g.servers.referenced),
            format!("{key}.servers"),
            "every server is a backup: at least one must have backup: false",
        );
    }
    GroupEdge {
        proxy_protocol,
        queue: QueueConfig {
            max: queue
                .and_then(|q| q.max.as_ref())
                .map_or(DEFAULT_QUEUE_MAX, |m| m.value),
            timeout,
        },
    }
}

/// Checks the edge keys of server `s` (`key` = `groups.NAME.servers[i]`).
pub(super) fn server(s: &RawServer, key: &str, errs: &mut Errors) -> ServerEdge {
    let max_connections = match &s.max_connections {
        Some(m) if m.value == 0 => {
            errs.at(
                Some(&m.referenced),
                format!("{key}.max_connections"),
                "must be at least 1",
            );
            None
        }
        m => m.as_ref().map(|m| m.value),
    };
    let slow_start =
        s.slow_start
            .as_ref()
            .and_then(|d| match super::units::parse_duration(&d.value) {
                Ok(v) if v.is_zero() => None,
                Ok(v) => Some(v),
                Err(e) => {
                    errs.at(
                        Some(&d.referenced),
                        format!("{key}.slow_start"),
                        format!("{:?} is not a duration such as 30s: {e}", d.value),
                    );
                    None
                }
            });
    ServerEdge {
        max_connections,
        backup: s.backup.unwrap_or(false),
        slow_start,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn load(group: &str, server: &str) -> Result<crate::config::Config, String> {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n{group}    servers:\n      - address: 127.0.0.1:9001\n{server}      - address: 127.0.0.1:9002\n"
        );
        crate::config::load_str(&yaml, Path::new("t.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn edge_keys_parse() {
        let c = load(
            "    proxy_protocol: v2\n    queue: { max: 5, timeout: 2s }\n",
            "        max_connections: 3\n        backup: false\n        slow_start: 30s\n",
        )
        .unwrap();
        let g = &c.groups[0];
        assert_eq!(g.edge.proxy_protocol, Some(super::ProxyVersion::V2));
        assert_eq!(g.edge.queue.max, 5);
        assert_eq!(g.edge.queue.timeout, std::time::Duration::from_secs(2));
        assert_eq!(g.servers[0].edge.max_connections, Some(3));
        assert_eq!(
            g.servers[0].edge.slow_start,
            Some(std::time::Duration::from_secs(30))
        );
        // Defaults: queue of 1024 waiting up to the connect timeout.
        let c = load("", "").unwrap();
        assert_eq!(c.groups[0].edge.queue.max, super::DEFAULT_QUEUE_MAX);
        assert_eq!(c.groups[0].edge.queue.timeout, c.groups[0].timeouts.connect);
    }

    #[test]
    fn edge_key_errors_name_the_key() {
        let e = load("    proxy_protocol: v3\n", "").unwrap_err();
        assert!(
            e.contains("t.yaml:7:21: groups.g.proxy_protocol: unknown version"),
            "{e}"
        );
        let e = load("", "        max_connections: 0\n").unwrap_err();
        assert!(
            e.contains("groups.g.servers[0].max_connections: must be at least 1"),
            "{e}"
        );
        let e = load("", "        slow_start: soon\n").unwrap_err();
        assert!(e.contains("groups.g.servers[0].slow_start:"), "{e}");
        let yaml = "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9001\n        backup: true\n";
        let e = crate::config::load_str(yaml, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("every server is a backup"), "{e}");
    }
}
