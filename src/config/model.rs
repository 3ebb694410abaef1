//! The validated runtime configuration: what [`super::validate`] builds from
//! the raw file and the rest of weir reads. No parsing or I/O here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use rustls::sign::CertifiedKey;

use crate::affinity::{AffinitySecret, StickyConfig};
use crate::balancer::hash::HashKey;
pub use crate::balancer::Algorithm;
use crate::balancer::BalancerParams;
use crate::health::{HealthCheck, PassiveConfig};
use crate::route::{JwtVerifier, Route};

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

impl BalancerParams for GroupConfig {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }
    fn default_rtt(&self) -> Duration {
        self.default_rtt
    }
    fn ewma_decay(&self) -> Duration {
        self.ewma_decay
    }
}
