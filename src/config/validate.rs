//! Raw config → runtime [`Config`]: parsed addresses, loaded certificates,
//! compiled route matchers, route → group references checked, defaults applied.
//!
//! Validation collects every error it finds rather than stopping at the first,
//! so `weir --check` shows them all at once.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::uri::Authority;
use http::{HeaderValue, Method};
use rustls::sign::CertifiedKey;
use serde_saphyr::Location;

use super::route_extra;
use super::{ConfigError, ConfigErrors, RawConfig, RawGroup, RawListener, RawRoute, Spanned};
use crate::affinity::{AffinitySecret, StickyConfig};
use crate::balancer::hash::HashKey;
use crate::health::{HealthCheck, PassiveConfig};
use crate::route::{HostMatch, JwtVerifier, PathMatch, Route, ValueMatch};
use crate::tls;

/// Default time allowed to receive request headers (slowloris guard).
pub const DEFAULT_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest request header section, in bytes (64 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default longest wait for the next bytes of a request body (nginx's default).
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most header fields in one request (hyper's HTTP/1 default).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Largest `max_headers` accepted.
pub const MAX_MAX_HEADERS: usize = 10_000;
/// Default keep-alive idle timeout of a client connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default graceful-shutdown drain timeout.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time to the upstream's response headers.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default extra attempts on another server.
pub const DEFAULT_RETRIES: u32 = 1;
/// Default idle time of a pooled upstream connection.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Default cap of idle pooled connections per server.
pub const DEFAULT_POOL_MAX_IDLE: usize = 128;
/// Most worker threads accepted (`workers`).
pub const MAX_WORKERS: usize = 1024;
/// Largest server weight accepted.
pub const MAX_WEIGHT: u32 = 1000;

/// The validated runtime configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Routes, in file order (first match wins).
    pub routes: Vec<RouteConfig>,
    /// Server groups, sorted by name; routes refer to them by index.
    pub groups: Vec<GroupConfig>,
    /// Bearer-token verifier of the `jwt` section, if any.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Graceful shutdown: how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// The admin listener's address, if any.
    pub admin: Option<SocketAddr>,
    /// The admin token (`admin.token`, `token_env` or `token_file`): when
    /// set, mutating admin endpoints need `Authorization: Bearer <token>`.
    pub admin_token: Option<Arc<[u8]>>,
    /// FNV-1a hash of the file's bytes (the `weir_config_hash` metric).
    pub hash: u64,
    /// The sticky-cookie secret (`affinity:`); `None` = random per process.
    pub affinity: Option<AffinitySecret>,
    /// Rate-limit policies, the Redis section, and each route's protection
    /// (rate limits, IP rules, body limit), indexed like `routes`.
    pub limits: crate::limits::LimitsConfig,
    /// Worker threads (`workers`); 0 = one per CPU core.
    pub workers: usize,
    /// The access log.
    pub access_log: AccessLogConfig,
    /// The response cache's sizes and each route's `cache` setting.
    pub cache: crate::cache::CacheSettings,
}

/// The format of access lines (`access_log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// `TIME client=… method=… path=… status=… …` (key=value, one line).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated `access_log` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Whether lines are written.
    pub enabled: bool,
    /// Line format.
    pub format: AccessLogFormat,
    /// The file (appended to); `None` = stderr.
    pub path: Option<PathBuf>,
}

impl Default for AccessLogConfig {
    /// On, text, stderr, unless the log filter disables `weir::access`.
    fn default() -> Self {
        AccessLogConfig {
            enabled: tracing::enabled!(target: "weir::access", tracing::Level::INFO),
            format: AccessLogFormat::Text,
            path: None,
        }
    }
}

/// A validated listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Name for logs and metrics.
    pub name: Arc<str>,
    /// Address to bind.
    pub address: SocketAddr,
    /// Certificates when the listener terminates TLS (the first is the default).
    pub tls: Option<Vec<Arc<CertifiedKey>>>,
    /// The `(cert, key)` files of `tls`, in the same order: watched for
    /// changes while running (`listener::cert_watch`).
    pub tls_files: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// Time allowed for the TLS handshake and each request's headers.
    pub request_header_timeout: Duration,
    /// Largest request header section, in bytes.
    pub max_header_bytes: usize,
    /// Keep-alive idle timeout of client connections.
    pub idle_timeout: Duration,
    /// `max_connections`: open client connections at most (`None` = no cap).
    pub max_connections: Option<usize>,
    /// `max_connections_per_ip`: open connections per client address at most.
    pub max_connections_per_ip: Option<usize>,
    /// Longest wait for the next bytes of a request body (408 past it).
    pub client_body_timeout: Duration,
    /// Most header fields in one request (HTTP/1 and HTTP/2); more get 431.
    pub max_headers: usize,
    /// PROXY protocol and client certificates (`config/edge.rs`).
    pub edge: super::edge::ListenerEdge,
    /// `tls.acme`: certificates obtained by ACME (`config/acme.rs`).
    pub acme: Option<Arc<super::acme::AcmeConfig>>,
}

/// A validated route (see [`Route`]).
pub type RouteConfig = Route;

/// Default `default_rtt` of `least_response_time` (linkerd2-proxy's default).
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// Default time constant of the peak-EWMA response time (Finagle, linkerd).
pub const DEFAULT_EWMA_DECAY: Duration = Duration::from_secs(10);

/// Balancing algorithm of a group (`groups.*.algorithm`). Every one honors
/// server weights; see `docs/balancing.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `round_robin`: smooth weighted round robin (nginx).
    RoundRobin,
    /// `least_connections`: fewest in-flight requests per weight (nginx `least_conn`).
    LeastConnections,
    /// `ip_hash`: consistent hashing of the client address (ketama ring).
    IpHash,
    /// `hash`: consistent hashing of the group's `hash_key`.
    Hash,
    /// `least_response_time`: peak EWMA × (in-flight + 1) / weight, two choices.
    LeastResponseTime,
    /// `power_of_two_choices`: two distinct weighted-random servers, less loaded wins.
    PowerOfTwoChoices,
    /// `random`: weighted random.
    Random,
}

impl Algorithm {
    /// Every algorithm with its config name.
    pub const ALL: [(&'static str, Algorithm); 7] = [
        ("round_robin", Algorithm::RoundRobin),
        ("least_connections", Algorithm::LeastConnections),
        ("ip_hash", Algorithm::IpHash),
        ("hash", Algorithm::Hash),
        ("least_response_time", Algorithm::LeastResponseTime),
        ("power_of_two_choices", Algorithm::PowerOfTwoChoices),
        ("random", Algorithm::Random),
    ];

    /// The algorithm named `name` in the config.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// The config name of the algorithm.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("round_robin", |(n, _)| n)
    }
}

/// A validated server group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Group name, as written under `groups:`.
    pub name: Arc<str>,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// The key `hash` hashes (set exactly when `algorithm` is `hash`).
    pub hash_key: Option<HashKey>,
    /// `least_response_time`: the response time of a server without samples.
    pub default_rtt: Duration,
    /// Time constant of the peak-EWMA response time.
    pub ewma_decay: Duration,
    /// Servers, in file order.
    pub servers: Vec<ServerConfig>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Extra attempts on another server when safe.
    pub retries: u32,
    /// Cookie affinity (`sticky:`), if any.
    pub sticky: Option<StickyConfig>,
    /// Idle time of a pooled upstream connection.
    pub pool_idle_timeout: Duration,
    /// Cap of idle pooled connections per server.
    pub pool_max_idle_per_server: usize,
    /// Active health checks; `None` = servers are always up.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection; `None` = off.
    pub passive: Option<PassiveConfig>,
    /// With no usable server, send to all instead of answering 503.
    pub fail_open: bool,
    /// The protocol spoken to the servers (`protocol`).
    pub protocol: super::upstream_tls::UpstreamProtocol,
    /// TLS to the servers (`tls`); `None` = plain TCP.
    pub tls: Option<Arc<super::upstream_tls::UpstreamTlsConfig>>,
    /// PROXY protocol to the servers and the queue (`config/edge.rs`).
    pub edge: super::edge::GroupEdge,
    /// Servers from DNS (`discovery`), added to `servers` at run time.
    pub discovery: Option<super::discovery::DiscoveryConfig>,
}

/// A validated server (endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Stable id (cookies, metrics, state across reloads).
    pub id: Arc<str>,
    /// `host:port` as written.
    pub address: Authority,
    /// Relative weight, 1..=[`MAX_WEIGHT`].
    pub weight: u32,
    /// `max_connections`, `backup`, `slow_start` (`config/edge.rs`).
    pub edge: super::edge::ServerEdge,
}

/// Upstream timeouts of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect timeout.
    pub connect: Duration,
    /// Time from sending the request until the response headers arrive.
    pub response: Duration,
}

/// The errors found so far; each names the file, line, column and key.
pub(super) struct Errors<'a> {
    file: &'a Path,
    pub(super) list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn at(
        &mut self,
        loc: Option<&Location>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = loc.map_or((0, 0), |l| (l.line(), l.column()));
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Checks `raw` and builds the runtime config. `file` anchors relative paths
/// and names the file in errors.
///
/// # Errors
/// Every problem found.
pub fn validate(raw: RawConfig, file: &Path) -> Result<Config, ConfigErrors> {
    let mut errs = Errors {
        file,
        list: Vec::new(),
    };
    let base = file.parent().unwrap_or(Path::new("."));

    let admin = raw
        .admin
        .as_ref()
        .and_then(|a| match resolve_bind_address(&a.address.value) {
            Ok(addr) => Some(addr),
            Err(m) => {
                errs.at(Some(&a.address.referenced), "admin.address", m);
                None
            }
        });
    let admin_token = raw
        .admin
        .as_ref()
        .and_then(|a| super::admin::token(a, base, &mut errs));
    let secret = super::affinity::secret(raw.affinity.as_ref(), base, &mut errs);
    let jwt = raw
        .jwt
        .as_ref()
        .and_then(|j| super::jwt::build(j, base, &mut errs))
        .map(Arc::new);

    if raw.listeners.is_empty() {
        errs.at(None, "listeners", "at least one listener is required");
    }
    let mut listeners = Vec::new();
    let mut names = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        if let Some(l) = listener(l, i, base, &mut errs) {
            if !names.insert(l.name.clone()) {
                errs.at(
                    Some(&raw.listeners[i].address.referenced),
                    format!("listeners[{i}].name"),
                    format!("duplicate listener name {:?}", l.name),
                );
            }
            listeners.push(l);
        }
    }

    let group_index: HashMap<&str, usize> = raw
        .groups
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut groups = Vec::new();
    for (name, g) in &raw.groups {
        if let Some(g) = group(name, g, secret.as_ref(), base, &mut errs) {
            groups.push(g);
        }
    }
    super::affinity::unique_cookie_names(&raw.groups, &mut errs);

    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(r) = route(r, i, &group_index, raw.jwt.is_some(), &mut errs) {
            routes.push(r);
        }
    }
    if raw.routes.is_empty() {
        errs.at(None, "routes", "at least one route is required");
    }
    let limits = super::limits::build(
        &raw.rate_limits,
        raw.redis.as_ref(),
        &raw.routes,
        raw.jwt.is_some(),
        &mut errs,
    );

    let workers = match &raw.workers {
        Some(w) if w.value > MAX_WORKERS => {
            errs.at(
                Some(&w.referenced),
                "workers",
                format!("at most {MAX_WORKERS} workers"),
            );
            0
        }
        Some(w) => w.value,
        None => 0,
    };

    let access_log = access_log(raw.access_log.as_ref(), base, &mut errs);
    let cache = super::cache::build(raw.cache.as_ref(), &raw.routes, &mut errs);

    if !errs.list.is_empty() {
        return Err(ConfigErrors(errs.list));
    }
    Ok(Config {
        file: file.to_path_buf(),
        listeners,
        routes,
        groups,
        jwt,
        drain_timeout: raw.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        admin,
        admin_token,
        hash: 0,
        affinity: secret,
        limits,
        workers,
        access_log,
        cache,
    })
}

fn access_log(
    raw: Option<&super::RawAccessLog>,
    base: &Path,
    errs: &mut Errors,
) -> AccessLogConfig {
    let mut config = AccessLogConfig::default();
    let Some(raw) = raw else {
        return config;
    };
    config.enabled = raw.enabled.unwrap_or(true);
    if let Some(f) = &raw.format {
        match f.value.as_str() {
            "text" => config.format = AccessLogFormat::Text,
            "json" => config.format = AccessLogFormat::Json,
            other => errs.at(
                Some(&f.referenced),
                "access_log.format",
                format!("unknown format {other:?}: text or json"),
            ),
        }
    }
    config.path = raw.path.as_ref().map(|p| base.join(p));
    config
}

fn listener(l: &RawListener, i: usize, base: &Path, errs: &mut Errors) -> Option<ListenerConfig> {
    let key = format!("listeners[{i}]");
    let address = match resolve_bind_address(&l.address.value) {
        Ok(a) => Some(a),
        Err(m) => {
            errs.at(Some(&l.address.referenced), format!("{key}.address"), m);
            None
        }
    };
    let max_header_bytes = match &l.max_header_bytes {
        None => DEFAULT_MAX_HEADER_BYTES,
        Some(v) if v.value < 8192 => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.max_header_bytes"),
                "must be at least 8192",
            );
            DEFAULT_MAX_HEADER_BYTES
        }
        Some(v) => v.value,
    };
    let max_headers = match &l.max_headers {
        None => DEFAULT_MAX_HEADERS,
        Some(v) if v.value == 0 || v.value > MAX_MAX_HEADERS => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.max_headers"),
                format!("must be between 1 and {MAX_MAX_HEADERS}"),
            );
            DEFAULT_MAX_HEADERS
        }
        Some(v) => v.value,
    };
    let client_body_timeout = match l.client_body_timeout {
        None => DEFAULT_CLIENT_BODY_TIMEOUT,
        Some(d) if d.is_zero() => {
            errs.at(
                Some(&l.address.referenced),
                format!("{key}.client_body_timeout"),
                "must be more than 0s",
            );
            DEFAULT_CLIENT_BODY_TIMEOUT
        }
        Some(d) => d,
    };
    let mut tls_files = Vec::new();
    let tls = l.tls.as_ref().map(|t| {
        if t.certificates.value.is_empty() && t.acme.is_none() {
            // Absent `certificates` has no span: point at the listener.
            let at = if t.certificates.referenced == serde_saphyr::Location::UNKNOWN {
                &l.address.referenced
            } else {
                &t.certificates.referenced
            };
            errs.at(
                Some(at),
                format!("{key}.tls.certificates"),
                "at least one certificate is required",
            );
        }
        let mut keys = Vec::new();
        for (j, c) in t.certificates.value.iter().enumerate() {
            let cert = base.join(&c.cert.value);
            let pkey = base.join(&c.key.value);
            match tls::load_certified_key(&cert, &pkey) {
                Ok(k) => {
                    keys.push(Arc::new(k));
                    tls_files.push((cert, pkey));
                }
                Err(tls::CertError::Cert(m)) => errs.at(
                    Some(&c.cert.referenced),
                    format!("{key}.tls.certificates[{j}].cert"),
                    format!("{}: {m}", cert.display()),
                ),
                Err(tls::CertError::Key(m)) => errs.at(
                    Some(&c.key.referenced),
                    format!("{key}.tls.certificates[{j}].key"),
                    format!("{}: {m}", pkey.display()),
                ),
            }
        }
        keys
    });
    let cap = |v: &Option<Spanned<usize>>, name: &str, errs: &mut Errors| match v {
        Some(v) if v.value == 0 => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.{name}"),
                "must be at least 1",
            );
            None
        }
        Some(v) => Some(v.value),
        None => None,
    };
    let max_connections = cap(&l.max_connections, "max_connections", errs);
    let max_connections_per_ip = cap(&l.max_connections_per_ip, "max_connections_per_ip", errs);
    let edge = super::edge::listener(l, &key, base, errs);
    let acme = super::acme::acme(
        l.tls.as_ref().and_then(|t| t.acme.as_ref()),
        &key,
        base,
        errs,
    );
    let address = address?;
    Some(ListenerConfig {
        name: Arc::from(l.name.clone().unwrap_or_else(|| address.to_string())),
        address,
        tls,
        tls_files,
        request_header_timeout: l
            .request_header_timeout
            .unwrap_or(DEFAULT_REQUEST_HEADER_TIMEOUT),
        max_header_bytes,
        idle_timeout: l.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
        max_connections,
        max_connections_per_ip,
        client_body_timeout,
        max_headers,
        edge,
        acme,
    })
}

/// Parses a listener address: `ip:port`, `[v6]:port`, or `name:port` resolved now.
fn resolve_bind_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{s:?} is not host:port"));
    }
    (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn group(
    name: &str,
    g: &RawGroup,
    secret: Option<&AffinitySecret>,
    base: &Path,
    errs: &mut Errors,
) -> Option<GroupConfig> {
    let key = format!("groups.{name}");
    let before = errs.list.len();
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
    let hash_key = match (&g.hash_key, algorithm) {
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
    };
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

    let sticky = g
        .sticky
        .as_ref()
        .and_then(|s| super::affinity::sticky(s, &key, secret, &servers, errs));

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
    let connect = g.timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let server_edges: Vec<_> = servers.iter().map(|s| s.edge).collect();
    let edge = super::edge::group(g, &key, connect, &server_edges, errs);
    if let (Some(pp), super::upstream_tls::UpstreamProtocol::Http2) =
        (g.proxy_protocol.as_ref(), protocol)
    {
        // A PROXY header names one client; an HTTP/2 connection carries the
        // requests of many (HAProxy makes such connections private instead).
        errs.at(
            Some(&pp.referenced),
            format!("{key}.proxy_protocol"),
            "proxy_protocol needs protocol: http1 (an HTTP/2 connection is shared by many clients, a PROXY header names one)".to_string(),
        );
    }
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
        timeouts: Timeouts {
            connect: g.timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            response: g.timeouts.response.unwrap_or(DEFAULT_RESPONSE_TIMEOUT),
        },
        retries,
        sticky,
        pool_idle_timeout: g.pool.idle_timeout.unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
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

/// A humantime duration (`50ms`, `10s`) greater than zero.
fn positive_duration(d: &Spanned<String>, key: String, errs: &mut Errors) -> Option<Duration> {
    match humantime::parse_duration(d.value.trim()) {
        Ok(v) if !v.is_zero() => Some(v),
        Ok(_) => {
            errs.at(Some(&d.referenced), key, "must be greater than 0");
            None
        }
        Err(e) => {
            errs.at(
                Some(&d.referenced),
                key,
                format!("{:?} is not a duration such as 50ms or 10s: {e}", d.value),
            );
            None
        }
    }
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

fn route(
    r: &RawRoute,
    i: usize,
    groups: &HashMap<&str, usize>,
    has_jwt: bool,
    errs: &mut Errors,
) -> Option<RouteConfig> {
    let key = format!("routes[{i}]");
    let before = errs.list.len();
    let m = &r.matchers;
    let extra = route_extra::build(r, &key, has_jwt, errs);

    let content = super::content::build(r, &key, errs);
    let group = match &r.group {
        Some(g) => groups.get(g.value.as_str()).copied(),
        None => Some(crate::route::NO_GROUP),
    };
    if let (None, Some(g)) = (group, &r.group) {
        errs.at(
            Some(&g.referenced),
            format!("{key}.group"),
            format!("no group named {:?} under groups", g.value),
        );
    }
    let host = m
        .host
        .as_ref()
        .and_then(|h| match HostMatch::parse(&h.value) {
            Ok(h) => Some(h),
            Err(e) => {
                errs.at(Some(&h.referenced), format!("{key}.match.host"), e);
                None
            }
        });
    let path = match (&m.path_prefix, &m.path) {
        (Some(_), Some(p)) => {
            errs.at(
                Some(&p.referenced),
                format!("{key}.match.path"),
                "use path or path_prefix, not both",
            );
            PathMatch::Any
        }
        (Some(p), None) => PathMatch::prefix(&p.value).unwrap_or_else(|e| {
            errs.at(Some(&p.referenced), format!("{key}.match.path_prefix"), e);
            PathMatch::Any
        }),
        (None, Some(p)) => PathMatch::pattern(&p.value).unwrap_or_else(|e| {
            errs.at(Some(&p.referenced), format!("{key}.match.path"), e);
            PathMatch::Any
        }),
        (None, None) => PathMatch::Any,
    };
    let mut methods = Vec::new();
    if let Some(ms) = &m.methods {
        for (j, name) in ms.value.iter().enumerate() {
            match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                Ok(method) => methods.push(method),
                Err(_) => errs.at(
                    Some(&ms.referenced),
                    format!("{key}.match.methods[{j}]"),
                    format!("{name:?} is not an HTTP method"),
                ),
            }
        }
    }
    let mut headers = Vec::new();
    if let Some(hs) = &m.headers {
        for (name, value) in &hs.value {
            let hkey = format!("{key}.match.headers.{name}");
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                errs.at(Some(&hs.referenced), hkey, "not a valid header name");
                continue;
            };
            if !value.starts_with('~') && HeaderValue::from_str(value).is_err() {
                errs.at(Some(&hs.referenced), hkey, "not a valid header value");
                continue;
            }
            let matcher = match ValueMatch::parse(value) {
                Ok(m) => m,
                Err(e) => {
                    errs.at(Some(&hs.referenced), hkey, e);
                    continue;
                }
            };
            headers.push((name, matcher));
        }
    }
    if errs.list.len() > before {
        return None;
    }
    Some(Route {
        name: Arc::from(r.name.clone().unwrap_or_else(|| format!("route-{}", i + 1))),
        host,
        path,
        methods,
        headers,
        query: extra.query,
        cookies: extra.cookies,
        jwt_claims: extra.jwt_claims,
        forward_claims: extra.forward_claims,
        content,
        group: group?,
    })
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
}
