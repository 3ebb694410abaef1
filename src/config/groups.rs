//! Validation of one server group (`groups.NAME`): its balancing keys, its
//! servers, and the sections each validated in its own file (health checks,
//! TLS, discovery, sticky cookies, queue and PROXY protocol).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;

use super::model::*;
use super::units;
use super::validate::Errors;
use super::{RawGroup, Spanned};
use crate::affinity::AffinitySecret;
use crate::balancer::hash::HashKey;

/// The balancing keys of a group: `algorithm`, `hash_key`, `default_rtt`, `ewma_decay`.
struct Balancing {
    algorithm: Algorithm,
    hash_key: Option<HashKey>,
    default_rtt: Duration,
    ewma_decay: Duration,
}

/// Validates `groups.NAME`; sticky cookies are signed with `secret`.
pub(super) fn group(
    name: &str,
    g: &RawGroup,
    secret: Option<&AffinitySecret>,
    base: &Path,
    errs: &mut Errors,
) -> Option<GroupConfig> {
    let key = format!("groups.{name}");
    let before = errs.list.len();
    let Balancing {
        algorithm,
        hash_key,
        default_rtt,
        ewma_decay,
    } = balancing(g, &key, errs);
    let health_check = g
        .health_check
        .as_ref()
        .and_then(|h| super::health::health_check(h, &key, errs));
    let passive = g
        .passive
        .as_ref()
        .and_then(|p| super::health::passive(p, &key, errs));
    let protocol = super::upstream_tls::protocol(g.protocol.as_ref(), &key, errs);
    let tls = g
        .tls
        .as_ref()
        .and_then(|t| super::upstream_tls::tls(t, &key, base, errs));

    let discovery = g
        .discovery
        .as_ref()
        .and_then(|d| super::discovery::discovery(d, &key, errs));
    if g.servers.value.is_empty() && g.discovery.is_none() {
        errs.at(
            Some(&g.servers.referenced),
            format!("{key}.servers"),
            "at least one server is required (or a discovery section)",
        );
    }
    let servers = servers(name, g, &key, errs);

    let sticky = g
        .sticky
        .as_ref()
        .and_then(|s| super::affinity::sticky(s, &key, secret, &servers, errs));

    let retries = retries(g, &key, errs);
    let (timeouts, pool_idle_timeout) = timeouts(g, &key, errs);
    let server_edges: Vec<_> = servers.iter().map(|s| s.edge).collect();
    let edge = super::edge::group(g, &key, timeouts.connect, &server_edges, errs);
    proxy_protocol_needs_http1(g, protocol, &key, errs);
    if errs.list.len() > before {
        return None;
    }
    Some(GroupConfig {
        name: Arc::from(name),
        algorithm,
        hash_key,
        default_rtt,
        ewma_decay,
        servers,
        timeouts,
        retries,
        sticky,
        pool_idle_timeout,
        pool_max_idle_per_server: g.pool.max_idle_per_server.unwrap_or(DEFAULT_POOL_MAX_IDLE),
        health_check,
        passive,
        fail_open: g.fail_open.unwrap_or(false),
        protocol,
        tls: tls.map(Arc::new),
        edge,
        discovery,
    })
}

/// `retries` (at most 16).
fn retries(g: &RawGroup, key: &str, errs: &mut Errors) -> u32 {
    let retries = g.retries.as_ref().map_or(DEFAULT_RETRIES, |r| r.value);
    if let Some(r) = &g.retries {
        if r.value > 16 {
            errs.at(
                Some(&r.referenced),
                format!("{key}.retries"),
                "must be at most 16",
            );
        }
    }
    retries
}

/// `timeouts.connect`, `timeouts.response` and `pool.idle_timeout` (each above 0).
fn timeouts(g: &RawGroup, key: &str, errs: &mut Errors) -> (Timeouts, Duration) {
    let connect = units::nonzero_or_default(
        g.timeouts.connect.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
        format!("{key}.timeouts.connect"),
        errs,
    );
    let response = units::nonzero_or_default(
        g.timeouts.response.as_ref(),
        DEFAULT_RESPONSE_TIMEOUT,
        format!("{key}.timeouts.response"),
        errs,
    );
    let pool_idle_timeout = units::nonzero_or_default(
        g.pool.idle_timeout.as_ref(),
        DEFAULT_POOL_IDLE_TIMEOUT,
        format!("{key}.pool.idle_timeout"),
        errs,
    );
    (Timeouts { connect, response }, pool_idle_timeout)
}

/// A PROXY header names one client; an HTTP/2 connection carries the
/// requests of many (HAProxy makes such connections private instead).
fn proxy_protocol_needs_http1(
    g: &RawGroup,
    protocol: super::upstream_tls::UpstreamProtocol,
    key: &str,
    errs: &mut Errors,
) {
    if let (Some(pp), super::upstream_tls::UpstreamProtocol::Http2) =
        (g.proxy_protocol.as_ref(), protocol)
    {
        errs.at(
            Some(&pp.referenced),
            format!("{key}.proxy_protocol"),
            "proxy_protocol needs protocol: http1 (an HTTP/2 connection is shared by many clients, a PROXY header names one)".to_string(),
        );
    }
}

fn balancing(g: &RawGroup, key: &str, errs: &mut Errors) -> Balancing {
    let algorithm = match &g.algorithm {
        None => Algorithm::RoundRobin,
        Some(a) => Algorithm::from_name(&a.value).unwrap_or_else(|| {
            errs.at(
                Some(&a.referenced),
                format!("{key}.algorithm"),
                format!(
                    "unknown algorithm {:?}; expected one of round_robin, least_connections, \
                     ip_hash, hash, least_response_time, power_of_two_choices, random",
                    a.value
                ),
            );
            Algorithm::RoundRobin
        }),
    };
    let hash_key = hash_key(g, algorithm, key, errs);
    let default_rtt = match &g.default_rtt {
        Some(d) if algorithm != Algorithm::LeastResponseTime => {
            errs.at(
                Some(&d.referenced),
                format!("{key}.default_rtt"),
                format!(
                    "only used with algorithm least_response_time (this group uses {})",
                    algorithm.name()
                ),
            );
            DEFAULT_RTT
        }
        Some(d) => positive_duration(d, format!("{key}.default_rtt"), errs).unwrap_or(DEFAULT_RTT),
        None => DEFAULT_RTT,
    };
    let ewma_decay = g
        .ewma_decay
        .as_ref()
        .and_then(|d| positive_duration(d, format!("{key}.ewma_decay"), errs))
        .unwrap_or(DEFAULT_EWMA_DECAY);
    Balancing {
        algorithm,
        hash_key,
        default_rtt,
        ewma_decay,
    }
}

/// `hash_key`: required by `algorithm: hash`, an error with any other.
fn hash_key(g: &RawGroup, algorithm: Algorithm, key: &str, errs: &mut Errors) -> Option<HashKey> {
    match (&g.hash_key, algorithm) {
        (Some(k), Algorithm::Hash) => match HashKey::parse(&k.value) {
            Ok(k) => Some(k),
            Err(m) => {
                errs.at(Some(&k.referenced), format!("{key}.hash_key"), m);
                None
            }
        },
        (Some(k), other) => {
            errs.at(
                Some(&k.referenced),
                format!("{key}.hash_key"),
                format!(
                    "only used with algorithm hash (this group uses {})",
                    other.name()
                ),
            );
            None
        }
        (None, Algorithm::Hash) => {
            let loc = g.algorithm.as_ref().map(|a| &a.referenced);
            errs.at(
                loc,
                format!("{key}.hash_key"),
                "algorithm hash needs hash_key: header:NAME, cookie:NAME or query:NAME",
            );
            None
        }
        (None, _) => None,
    }
}

/// `servers`: addresses, weights and ids (unique within the group).
fn servers(name: &str, g: &RawGroup, key: &str, errs: &mut Errors) -> Vec<ServerConfig> {
    let mut servers = Vec::new();
    let mut ids = HashSet::new();
    for (i, s) in g.servers.value.iter().enumerate() {
        let skey = format!("{key}.servers[{i}]");
        let address = match parse_server_address(&s.address.value) {
            Ok(a) => a,
            Err(m) => {
                errs.at(Some(&s.address.referenced), format!("{skey}.address"), m);
                continue;
            }
        };
        let weight = match &s.weight {
            None => 1,
            Some(w) if (1..=MAX_WEIGHT).contains(&w.value) => w.value,
            Some(w) => {
                errs.at(
                    Some(&w.referenced),
                    format!("{skey}.weight"),
                    format!("must be between 1 and {MAX_WEIGHT}"),
                );
                1
            }
        };
        let (id, loc) = match &s.id {
            Some(id) if id.value.is_empty() => {
                errs.at(
                    Some(&id.referenced),
                    format!("{skey}.id"),
                    "must not be empty",
                );
                continue;
            }
            Some(id) => (id.value.clone(), &id.referenced),
            None => (s.address.value.clone(), &s.address.referenced),
        };
        if !ids.insert(id.clone()) {
            errs.at(
                Some(loc),
                format!("{skey}.id"),
                format!("duplicate server id {id:?} in group {name:?}"),
            );
        }
        servers.push(ServerConfig {
            id: Arc::from(id),
            address,
            weight,
            edge: super::edge::server(s, &skey, errs),
        });
    }

    servers
}

/// A humantime duration (`50ms`, `10s`) greater than zero.
fn positive_duration(d: &Spanned<String>, key: String, errs: &mut Errors) -> Option<Duration> {
    units::positive(d, key, "50ms or 10s", errs)
}

/// A server address must be `host:port` with an explicit port and nothing else.
fn parse_server_address(s: &str) -> Result<Authority, String> {
    let bad = || format!("{s:?} is not host:port");
    let a: Authority = s.parse().map_err(|_| bad())?;
    if a.port_u16().is_none() || a.as_str().contains('@') || a.host().is_empty() {
        return Err(bad());
    }
    Ok(a)
}

#[cfg(test)]
mod balancing_tests {
    use std::path::Path;

    use super::*;

    fn group_yaml(extra: &str) -> String {
        format!(
            "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n{extra}    servers:\n      - address: 127.0.0.1:9001\n"
        )
    }

    fn load(extra: &str) -> Result<Config, String> {
        crate::config::load_str(&group_yaml(extra), Path::new("t.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn every_algorithm_is_accepted() {
        for (name, alg) in Algorithm::ALL {
            let extra = if name == "hash" {
                format!("    algorithm: {name}\n    hash_key: header:x-user\n")
            } else {
                format!("    algorithm: {name}\n")
            };
            let c = load(&extra).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c.groups[0].algorithm, alg);
            assert_eq!(alg.name(), name);
        }
        let c = load("").unwrap();
        assert_eq!(c.groups[0].algorithm, Algorithm::RoundRobin);
        assert_eq!(c.groups[0].default_rtt, DEFAULT_RTT);
        assert_eq!(c.groups[0].ewma_decay, DEFAULT_EWMA_DECAY);
    }

    #[test]
    fn hash_key_rules() {
        let c = load("    algorithm: hash\n    hash_key: cookie:sid\n").unwrap();
        assert_eq!(c.groups[0].hash_key, Some(HashKey::Cookie("sid".into())));
        let e = load("    algorithm: hash\n").unwrap_err();
        assert!(
            e.contains("t.yaml:7:16: groups.g.hash_key: algorithm hash needs hash_key"),
            "{e}"
        );
        let e = load("    algorithm: ip_hash\n    hash_key: header:x\n").unwrap_err();
        assert!(
            e.contains(
                "groups.g.hash_key: only used with algorithm hash (this group uses ip_hash)"
            ),
            "{e}"
        );
        let e = load("    algorithm: hash\n    hash_key: body:x\n").unwrap_err();
        assert!(
            e.contains("t.yaml:8:15: groups.g.hash_key:") && e.contains("unknown key source"),
            "{e}"
        );
        let e = load("    algorithm: hash\n    hash_key: \"header:bad name\"\n").unwrap_err();
        assert!(e.contains("not a valid header name"), "{e}");
    }

    #[test]
    fn ewma_keys() {
        let c =
            load("    algorithm: least_response_time\n    default_rtt: 50ms\n    ewma_decay: 2s\n")
                .unwrap();
        assert_eq!(c.groups[0].default_rtt, Duration::from_millis(50));
        assert_eq!(c.groups[0].ewma_decay, Duration::from_secs(2));
        let e = load("    default_rtt: 50ms\n").unwrap_err();
        assert!(
            e.contains("groups.g.default_rtt: only used with algorithm least_response_time"),
            "{e}"
        );
        let e = load("    algorithm: least_response_time\n    default_rtt: fast\n").unwrap_err();
        assert!(
            e.contains("t.yaml:8:18: groups.g.default_rtt:") && e.contains("not a duration"),
            "{e}"
        );
        let e = load("    ewma_decay: 0s\n").unwrap_err();
        assert!(
            e.contains("groups.g.ewma_decay: must be greater than 0"),
            "{e}"
        );
        let e = load("    algorithm: fastest\n").unwrap_err();
        assert!(e.contains("unknown algorithm \"fastest\""), "{e}");
    }

    #[test]
    fn zero_timeouts_are_rejected() {
        let yaml = "drain_timeout: 0s\nlisteners:\n  - address: 127.0.0.1:0\n    request_header_timeout: 0s\n    idle_timeout: 0ms\nroutes:\n  - group: g\ngroups:\n  g:\n    timeouts: { connect: 0s, response: 0s }\n    pool: { idle_timeout: 0s }\n    servers:\n      - address: 127.0.0.1:9001\n";
        let e = crate::config::load_str(yaml, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        for want in [
            "t.yaml:1:16: drain_timeout: must be more than 0s",
            "t.yaml:4:29: listeners[0].request_header_timeout: must be more than 0s",
            "t.yaml:5:19: listeners[0].idle_timeout: must be more than 0s",
            "groups.g.timeouts.connect: must be more than 0s",
            "groups.g.timeouts.response: must be more than 0s",
            "groups.g.pool.idle_timeout: must be more than 0s",
        ] {
            assert!(e.contains(want), "{want} not in\n{e}");
        }
        let yaml = yaml.replace(" 0s", " 1s").replace(" 0ms", " 1ms");
        crate::config::load_str(&yaml, Path::new("t.yaml")).unwrap();
    }
}
