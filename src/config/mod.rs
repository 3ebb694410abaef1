//! The configuration file, as written: raw serde structs that mirror the YAML
//! of `CONFIG.md` key for key.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a
//! silently ignored setting. Values that need checking beyond their type
//! (addresses, patterns, references between sections) are wrapped in
//! [`Spanned`] so that [`validate`] can name their line and column. Defaults
//! are documented on each field and applied in [`validate`].
//!
//! Three jobs, three kinds of file:
//! - [`model`]: the validated runtime types ([`Config`], [`GroupConfig`], …)
//!   that the rest of weir reads;
//! - [`validate`] and the per-section files it calls (`listeners.rs`,
//!   `groups.rs`, `routes.rs`, `content.rs`, `rewrite.rs`, `redirect.rs`,
//!   `compression.rs`, `health.rs`, `affinity.rs`, `jwt.rs`, `limits.rs`,
//!   `cache.rs`, `edge.rs`, `upstream_tls.rs`, `discovery.rs`, `acme.rs`,
//!   `admin.rs`): raw → model, every error with file:line:col and key;
//!   durations and byte sizes through [`units`];
//! - [`load`] (with [`read`]): the I/O — the file itself, secrets from the
//!   environment and files, certificates, keys, trust roots, bind-address DNS.

pub mod acme;
mod admin;
mod affinity;
pub mod cache;
mod compression;
pub mod content;
pub mod discovery;
pub mod edge;
mod groups;
mod health;
pub mod jwt;
pub mod limits;
mod listeners;
pub mod load;
pub mod model;
pub mod read;
mod redirect;
mod rewrite;
mod routes;
pub mod units;
pub mod upstream_tls;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use serde_saphyr::Spanned;

pub use jwt::{RawClaimValue, RawJwt, RawJwtKey};
pub use load::{load_file, MAX_CONFIG_BYTES};
pub use model::{
    AccessLogConfig, AccessLogFormat, Algorithm, Config, GroupConfig, ListenerConfig, RouteConfig,
    ServerConfig, Timeouts,
};
pub use units::{HumanDuration, RawByteSize};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// One or more listeners (downstream sockets).
    pub listeners: Vec<RawListener>,
    /// The admin listener (`/metrics`, `/status`, `/healthz`, `/reload`); absent = none.
    pub admin: Option<RawAdmin>,
    /// The key of sticky cookies (`groups.*.sticky`). Absent: a random key
    /// per process, with a warning.
    #[serde(default)]
    pub affinity: Option<Spanned<RawAffinity>>,
    /// Bearer-token (JWT) verification, needed by `jwt_claims` and `forward_claims`.
    pub jwt: Option<Spanned<RawJwt>>,
    /// Ordered route table; the first route whose every matcher holds wins.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Server groups (clusters), by name.
    #[serde(default)]
    pub groups: BTreeMap<String, RawGroup>,
    /// How long a graceful shutdown waits for in-flight requests (default `30s`).
    pub drain_timeout: Option<Spanned<HumanDuration>>,
    /// Named rate-limit policies; routes use them by name (`docs/limits.md`).
    #[serde(default)]
    pub rate_limits: BTreeMap<String, Spanned<limits::RawRateLimit>>,
    /// The Redis shared by `store: redis` policies.
    pub redis: Option<Spanned<limits::RawRedis>>,
    /// Worker threads serving connections; 0 or absent = one per CPU core
    /// (nginx `worker_processes auto`). `--threads` overrides it.
    pub workers: Option<Spanned<usize>>,
    /// The access log; absent = one text line per request on stderr.
    pub access_log: Option<RawAccessLog>,
    /// The shared response cache's sizes (`docs/cache.md`); absent while a
    /// route caches = the defaults (`256MiB`, `8MiB`).
    pub cache: Option<Spanned<cache::RawCache>>,
}

/// The `access_log` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// Write access lines (default true).
    pub enabled: Option<bool>,
    /// `text` (default) or `json`.
    pub format: Option<Spanned<String>>,
    /// File appended to (relative to the config file's directory); absent =
    /// stderr. Reopened on `SIGUSR1`.
    pub path: Option<PathBuf>,
}

/// The admin listener (plain HTTP; keep it on loopback or a private network).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `host:port` to bind.
    pub address: Spanned<String>,
    /// Bearer token required on mutating endpoints (reload, drain, enable,
    /// cache purge), written in the file. At most one of `token`,
    /// `token_env`, `token_file`.
    pub token: Option<Spanned<String>>,
    /// Name of the environment variable holding the admin token.
    pub token_env: Option<Spanned<String>>,
    /// File holding the admin token (surrounding whitespace trimmed; at most 1 MiB).
    pub token_file: Option<Spanned<PathBuf>>,
}

/// One listener: a bound socket serving HTTP/1.1 and HTTP/2, plain or TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Name used in logs and metrics (default: the address).
    pub name: Option<String>,
    /// `host:port`; `[::]:8443` for IPv6; port 0 binds any free port.
    pub address: Spanned<String>,
    /// TLS settings; absent means plain HTTP (HTTP/1.1 and h2c prior knowledge).
    pub tls: Option<RawTls>,
    /// Time allowed to receive a request's headers, against slowloris (default `10s`).
    /// Also bounds the TLS handshake.
    pub request_header_timeout: Option<Spanned<HumanDuration>>,
    /// Largest request header section accepted, in bytes (default 65536 = 64 KiB);
    /// larger requests get 431. Minimum 8192.
    pub max_header_bytes: Option<Spanned<usize>>,
    /// How long an idle keep-alive client connection is kept open (default `60s`).
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    /// Most open client connections; past it new ones wait in the kernel
    /// backlog (absent = no cap).
    pub max_connections: Option<Spanned<usize>>,
    /// Most open connections from one client address; past it a new one is
    /// closed at once (absent = no cap).
    pub max_connections_per_ip: Option<Spanned<usize>>,
    /// Longest wait for the next bytes of a request body (default `10s`,
    /// nginx's `client_body_timeout`); past it the client gets 408.
    pub client_body_timeout: Option<Spanned<HumanDuration>>,
    /// Most header fields in one request, HTTP/1 and HTTP/2 alike (default
    /// 100); more get 431. Between 1 and 10000.
    pub max_headers: Option<Spanned<usize>>,
    /// Every connection starts with a PROXY protocol v1 or v2 header (from an
    /// L4 balancer); its client address is used everywhere (default false).
    pub proxy_protocol: Option<bool>,
    /// Longest wait for the PROXY header (default `5s`); past it the connection is closed.
    pub proxy_protocol_timeout: Option<Spanned<HumanDuration>>,
}

/// TLS termination settings of a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificates; the first is the default, SNI picks among them by their SAN names.
    /// May be absent when `acme` is set.
    #[serde(default = "acme::no_certificates")]
    pub certificates: Spanned<Vec<RawCertificate>>,
    /// Mutual TLS: verify client certificates (absent = none asked).
    pub client_auth: Option<edge::RawClientAuth>,
    /// Automatic certificates from an ACME server (`config/acme.rs`).
    pub acme: Option<acme::RawAcme>,
}

/// One certificate chain and its key, as PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM certificate chain, leaf first (relative to the config file's directory).
    pub cert: Spanned<PathBuf>,
    /// PEM private key: PKCS#8, PKCS#1 or SEC1.
    pub key: Spanned<PathBuf>,
}

/// One route: matchers and the group that serves what they match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Name used in logs and metrics (default: `route-N`, N counting from 1).
    pub name: Option<String>,
    /// The matchers; all must hold. Absent or empty matches every request.
    #[serde(rename = "match", default)]
    pub matchers: RawMatch,
    /// The server group that serves matching requests (required unless
    /// the route has a `redirect`).
    pub group: Option<Spanned<String>>,
    /// Claim name → upstream header set from the verified bearer token;
    /// client-sent copies of those headers are removed.
    pub forward_claims: Option<Spanned<BTreeMap<String, String>>>,
    /// Rate-limit policies (a name or a list) checked in order; over the
    /// limit: 429 with `Retry-After` and `RateLimit` headers.
    pub rate_limit: Option<Spanned<limits::RawNames>>,
    /// Client addresses (CIDR) that may use this route; others get 403.
    pub allow: Option<Spanned<Vec<String>>>,
    /// Client addresses (CIDR) refused with 403, checked before `allow`.
    pub deny: Option<Spanned<Vec<String>>>,
    /// Largest request body (`10MiB`, or bytes); larger gets 413.
    pub max_request_body: Option<Spanned<limits::RawByteSize>>,
    /// RFC 9111 shared caching of this route's responses: `true`, or
    /// `{ default_ttl: 60s }` to also keep responses without freshness information.
    pub cache: Option<Spanned<cache::RawRouteCacheValue>>,
    /// Upstream path rewrite: `prefix`, or `regex` + `replace`.
    pub rewrite: Option<Spanned<content::RawRewrite>>,
    /// Header rules for the upstream request (after weir's proxy headers).
    pub request_headers: Option<content::RawHeaderRules>,
    /// Header rules for the response to the client.
    pub response_headers: Option<content::RawHeaderRules>,
    /// Response compression by the client's `Accept-Encoding`.
    pub compression: Option<Spanned<content::RawCompression>>,
    /// Answer with a redirect instead of forwarding (then no `group`).
    pub redirect: Option<Spanned<content::RawRedirect>>,
}

/// The matchers of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Exact host or `*.example.com`; case-insensitive; the port is ignored.
    pub host: Option<Spanned<String>>,
    /// Segment-aware prefix: `/a` matches `/a` and `/a/b`, not `/ab`.
    pub path_prefix: Option<Spanned<String>>,
    /// A matchit pattern: exact, `{param}` or `{*rest}`. Not together with `path_prefix`.
    pub path: Option<Spanned<String>>,
    /// Allowed methods (any when absent).
    pub methods: Option<Spanned<Vec<String>>>,
    /// Header name → required value; `"*"` means present with any value,
    /// `~REGEX` a regular expression.
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    /// Query parameter → required value (percent-decoded); `"*"` and `~REGEX` as for headers.
    pub query: Option<Spanned<BTreeMap<String, String>>>,
    /// Cookie → required value; `"*"` and `~REGEX` as for headers.
    pub cookies: Option<Spanned<BTreeMap<String, String>>>,
    /// Claim → required value of a valid bearer token; arrays match when
    /// they contain the value, dots walk nested objects, `"*"` = present.
    pub jwt_claims: Option<Spanned<BTreeMap<String, RawClaimValue>>>,
}

/// A server group (cluster).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// Balancing algorithm (default `round_robin`, nginx's smooth weighted
    /// round robin): `round_robin | least_connections | ip_hash | hash |
    /// least_response_time | power_of_two_choices | random`.
    pub algorithm: Option<Spanned<String>>,
    /// Key of the `hash` algorithm (required there, an error elsewhere):
    /// `header:NAME | cookie:NAME | query:NAME`.
    pub hash_key: Option<Spanned<String>>,
    /// `least_response_time` only: the response time assumed for a server
    /// without samples yet (default `30ms`, linkerd2-proxy's default).
    pub default_rtt: Option<Spanned<String>>,
    /// Time constant of the peak-EWMA response time (default `10s`, Finagle's
    /// and linkerd's): how fast faster responses pull the estimate down. Used
    /// by `least_response_time`; the EWMA is kept for every group's metrics.
    pub ewma_decay: Option<Spanned<String>>,
    /// The servers (endpoints); may be empty when `discovery` is set.
    pub servers: Spanned<Vec<RawServer>>,
    /// Sticky-cookie affinity: pins a client to one server.
    #[serde(default)]
    pub sticky: Option<Spanned<RawSticky>>,
    /// Active health checks (absent = none: servers are always up).
    pub health_check: Option<RawHealthCheck>,
    /// Passive ejection from real traffic (absent = off).
    pub passive: Option<RawPassive>,
    /// When no server is usable: `false` (default) answers 503 with
    /// `Retry-After`; `true` sends to all servers as if healthy.
    pub fail_open: Option<bool>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Extra attempts on another server when it is safe (default 1): after a
    /// connect failure, or for idempotent methods after the connection was
    /// closed or reset before any response byte.
    pub retries: Option<Spanned<u32>>,
    /// Upstream connection pool settings.
    #[serde(default)]
    pub pool: RawPool,
    /// `http1` (default) or `http2` (h2 by ALPN over `tls`, h2c prior
    /// knowledge without).
    pub protocol: Option<Spanned<String>>,
    /// TLS to the servers (absent = plain TCP); see `docs/upstream-protocols.md`.
    pub tls: Option<Spanned<upstream_tls::RawUpstreamTls>>,
    /// `v1 | v2`: send a PROXY protocol header with the client address on
    /// each new upstream connection (absent = none).
    pub proxy_protocol: Option<Spanned<String>>,
    /// Where requests wait when every usable server is at its `max_connections`.
    pub queue: Option<edge::RawQueue>,
    /// Servers from DNS, in addition to `servers` (see `docs/discovery.md`).
    pub discovery: Option<discovery::RawDiscovery>,
}

/// The sticky-cookie key: exactly one of `secret_env`, `secret_file`, `secret`.
/// Every weir instance with the same secret honors the others' cookies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAffinity {
    /// Name of the environment variable holding the secret (read at load time).
    pub secret_env: Option<Spanned<String>>,
    /// File holding the secret (relative to the config file's directory;
    /// surrounding whitespace, such as a final newline, is ignored).
    pub secret_file: Option<Spanned<PathBuf>>,
    /// The secret itself, written in the file (at least 16 bytes).
    pub secret: Option<Spanned<String>>,
}

/// Cookie affinity of a group (`groups.NAME.sticky`): weir inserts a signed
/// cookie naming the server that answered, and sends later requests that
/// carry it to the same server while it is usable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    /// Cookie name (an RFC 6265 token, e.g. `weir_repo`).
    pub cookie: Spanned<String>,
    /// Lifetime, a humantime duration of whole seconds (`1h`); sent as
    /// `Max-Age` and checked on every request. Absent: a session cookie.
    pub max_age: Option<Spanned<String>>,
    /// Cookie `Path` attribute (default `/`).
    pub path: Option<Spanned<String>>,
    /// Cookie `Domain` attribute (default: none, host-only cookie).
    pub domain: Option<Spanned<String>>,
    /// `Secure` attribute: absent = when the request came over TLS; `true` =
    /// always (weir behind a TLS terminator); `false` = never.
    pub secure: Option<Spanned<bool>>,
    /// `SameSite` attribute: `lax` (default), `strict` or `none` (`none` implies `Secure`).
    pub same_site: Option<Spanned<String>>,
    /// `HttpOnly` attribute (default `true`).
    pub http_only: Option<bool>,
}

/// Active health check of a group (`groups.*.health_check`). Defaults are in
/// `health.rs` (`DEFAULT_HC_*`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// `http` (default), `tcp` (connect only) or `grpc`
    /// (`grpc.health.v1.Health/Check` over HTTP/2).
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Path (and query) of the probe request (default `/`). `type: http` only.
    pub path: Option<Spanned<String>>,
    /// `GET` (default) or `HEAD`. `type: http` only.
    pub method: Option<Spanned<String>>,
    /// `Host` header of the probe (default: the server's `host:port`). `type: http` only.
    pub host: Option<Spanned<String>>,
    /// Time between probe rounds, jittered ±10% (default `5s`).
    pub interval: Option<Spanned<String>>,
    /// Time one probe may take, connect included (default `2s`).
    pub timeout: Option<Spanned<String>>,
    /// Consecutive passes to mark a server up (default 2).
    pub healthy_threshold: Option<Spanned<u32>>,
    /// Consecutive failures to mark a server down (default 3).
    pub unhealthy_threshold: Option<Spanned<u32>>,
    /// Passing statuses: `"200-399"` (default), `"200"`, `200`, or a list of those.
    pub expected_status: Option<Spanned<RawStatuses>>,
    /// `type: grpc` only: the service name asked about (default: empty,
    /// the server as a whole).
    pub service: Option<Spanned<String>>,
}

/// `expected_status`: one item or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatuses {
    /// A single status or range.
    One(RawStatus),
    /// Several statuses or ranges.
    List(Vec<RawStatus>),
}

/// One status (`200`) or range (`"200-399"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatus {
    /// A status code.
    Code(u16),
    /// `"200"` or `"200-399"`.
    Text(String),
}

/// Passive ejection of a group (`groups.*.passive`), after Envoy's outlier
/// detection. Defaults are in `health.rs` (`DEFAULT_PASSIVE_*`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    /// Consecutive failed requests that eject a server (default 5).
    pub consecutive_failures: Option<Spanned<u32>>,
    /// First ejection time (default `30s`); doubles on repeated ejections.
    pub ejection: Option<Spanned<String>>,
    /// Cap of the ejection time (default `5m`).
    pub max_ejection: Option<Spanned<String>>,
    /// Count 5xx responses as failures too (default `false`).
    pub on_5xx: Option<bool>,
}

/// One server (endpoint) of a group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `host:port`.
    pub address: Spanned<String>,
    /// Relative weight, 1 to 1000 (default 1). Every algorithm honors it.
    pub weight: Option<Spanned<u32>>,
    /// Stable id for cookies and metrics (default: the address).
    pub id: Option<Spanned<String>>,
    /// Requests in flight on this server at most (HAProxy `maxconn`);
    /// absent = no limit. More wait in the group's queue.
    pub max_connections: Option<Spanned<u64>>,
    /// `true` = used only when no other (non-backup) server is usable (default false).
    pub backup: Option<bool>,
    /// A server that comes (back) up ramps its weight over this time (absent = at once).
    pub slow_start: Option<Spanned<String>>,
}

/// Upstream timeouts of a group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// TCP connect timeout (default `3s`).
    pub connect: Option<Spanned<HumanDuration>>,
    /// Time from sending the request until the response headers arrive (default `60s`).
    pub response: Option<Spanned<HumanDuration>>,
}

/// Upstream connection pool settings of a group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// How long an idle pooled connection is kept (default `90s`).
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    /// Most idle connections kept per server (default 128).
    pub max_idle_per_server: Option<usize>,
}

/// One configuration error, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// Dotted key path, e.g. `groups.repositories.servers[0].address`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    /// `FILE:LINE:COL: key: message`, or `FILE: message` when there is no location.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.display();
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "{file}: {}", self.message),
            (0, false) => write!(f, "{file}: {}: {}", self.key, self.message),
            (_, true) => write!(f, "{file}:{}:{}: {}", self.line, self.column, self.message),
            (_, false) => write!(
                f,
                "{file}:{}:{}: {}: {}",
                self.line, self.column, self.key, self.message
            ),
        }
    }
}

/// Every error found in a config file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses and validates config `text`, reporting errors against `path` (which
/// also anchors relative paths; it need not exist).
///
/// # Errors
/// Every problem found, each naming the file, line, column and key.
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let raw = parse(text, path)?;
    let mut config = validate::validate(raw, path)?;
    config.hash = crate::metrics::fnv1a(text.as_bytes());
    Ok(config)
}

/// Parses `text` into the raw structs (YAML syntax and types only).
///
/// # Errors
/// The first syntax or type error, with its line, column and key path.
pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigErrors> {
    let mut key = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
            key = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let mut message = e.without_snippet().to_string();
        // The location is reported separately; drop serde-saphyr's own suffix.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // `Spanned<T>` adds a `.value` step to the path that the user did not write.
        let key = key.replace(".value", "");
        let key = if key == "." { String::new() } else { key };
        // For unknown keys and bad values serde-saphyr reports the start of
        // the enclosing mapping; point at the key itself.
        let field = match message.strip_prefix("unknown field `") {
            Some(rest) => rest.split('`').next().unwrap_or(""),
            None => last_key(&key),
        };
        let (line, column) = locate_key(text, line, column, field).unwrap_or((line, column));
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            key,
            message,
        }])
    })
}

/// The last mapping key of a dotted path: `a.b[2].c` → `c`, `a.b[2]` → ``.
fn last_key(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or("");
    if last.contains('[') {
        ""
    } else {
        last
    }
}

/// Finds `key:` among the keys of the block mapping that starts at
/// `line:column` (1-based), scanning down until the mapping ends.
fn locate_key(text: &str, line: u64, column: u64, key: &str) -> Option<(u64, u64)> {
    if key.is_empty() || line == 0 || column == 0 {
        return None;
    }
    let indent = usize::try_from(column - 1).ok()?;
    let first = usize::try_from(line - 1).ok()?;
    for (i, l) in text.lines().enumerate().skip(first) {
        let content = l.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let lead = l.len() - content.len();
        if i > first && lead < indent {
            break; // left the mapping
        }
        let Some(at) = l.get(indent..) else { continue };
        // The first key of a sequence item sits after "- " on the dash's line.
        let prefix_ok = i == first || lead == indent;
        if prefix_ok {
            if let Some(rest) = at.strip_prefix(key) {
                if rest.trim_start().starts_with(':') {
                    return Some((i as u64 + 1, column));
                }
            }
        }
    }
    None
}
