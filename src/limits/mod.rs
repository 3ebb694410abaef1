//! Traffic protection: rate limits (local or shared through Redis),
//! connection limits, request body limits and IP allow/deny rules.
//!
//! Every check runs before a request reaches a server, and each is cheap
//! when not configured (one `Option` test). The pieces, one file each:
//!
//! - [`policy`]: the validated `rate_limits` policies and their request keys
//!   (`client_ip`, `header:NAME`, `cookie:NAME`, `query:NAME`, `claim:NAME`).
//! - [`rate`]: the local GCRA limiter (the `governor` crate over
//!   [`store::BoundedStore`], a capped key store that evicts and counts), and
//!   the [`rate::Decision`] both stores answer with.
//! - [`redis_store`]: the shared store, one Lua GCRA script per request.
//! - [`headers`]: `Retry-After`, `RateLimit-Policy` and `RateLimit`
//!   (draft-ietf-httpapi-ratelimit-headers).
//! - [`ip_rules`]: CIDR lists, deny first then allow.
//! - [`conn_limit`]: per-listener and per-client-address connection caps.
//! - [`body_limit`]: `max_request_body`, by `Content-Length` and while streaming.
//! - [`runtime`]: what a config snapshot holds ([`Limits`]) and what lives
//!   across reloads ([`LimitsRegistry`]: bucket state, the Redis client, counters).

pub mod body_limit;
pub mod conn_limit;
pub mod headers;
pub mod ip_rules;
pub mod policy;
pub mod rate;
pub mod redis_store;
pub mod runtime;
pub mod store;

use std::time::Duration;

pub use body_limit::BodyLimit;
pub use conn_limit::{ConnLimiter, ConnPermit};
pub use ip_rules::{Cidr, IpRules};
pub use policy::{OnError, PolicyConfig, RateKey, RedisConfig, Store};
pub use runtime::{Limits, LimitsRegistry, RateOutcome};

/// The validated protection settings of a config: the policies, the Redis
/// connection, and each route's checks (in route order).
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    /// Rate-limit policies, sorted by name.
    pub policies: Vec<PolicyConfig>,
    /// The `redis` section, when present.
    pub redis: Option<RedisConfig>,
    /// The checks of each route, indexed like `Config::routes`.
    pub routes: Vec<RouteProtection>,
}

/// The checks of one route.
#[derive(Debug, Clone, Default)]
pub struct RouteProtection {
    /// Indexes into [`LimitsConfig::policies`], in the order the route lists them.
    pub policies: Vec<usize>,
    /// `allow`/`deny` rules; `None` = every client address may use the route.
    pub ip_rules: Option<IpRules>,
    /// `max_request_body` in bytes; `None` = no limit.
    pub max_request_body: Option<u64>,
}

impl RouteProtection {
    /// True when the route has no check at all.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.ip_rules.is_none() && self.max_request_body.is_none()
    }
}

/// Parses a rate, `N/s`, `N/m` or `N/h`, into (count, period of one token).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_rate(s: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("{s:?} is not a rate such as 100/s, 600/m or 1000/h");
    let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("{s:?}: the count must be at least 1"));
    }
    let unit = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok((n, unit / n))
}

/// Parses a byte size: an integer number of bytes, or a number with a unit
/// (`B`, `KB`, `MB`, `GB` are powers of 1000; `KiB`, `MiB`, `GiB` of 1024).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a byte size such as 65536, 64KiB, 10MiB or 1GB");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("10/s").unwrap(),
            (10, Duration::from_millis(100))
        );
        assert_eq!(parse_rate("60/m").unwrap(), (60, Duration::from_secs(1)));
        assert_eq!(parse_rate("1/h").unwrap(), (1, Duration::from_secs(3600)));
        for bad in ["", "10", "0/s", "10/d", "x/s", "-1/s", "10/"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("65536").unwrap(), 65536);
        assert_eq!(parse_byte_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_byte_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_byte_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_byte_size("1KB").unwrap(), 1000);
        assert_eq!(parse_byte_size("2 MB").unwrap(), 2_000_000);
        for bad in ["", "KiB", "10XB", "1.5MiB", "-1", "99999999999999999999GiB"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
    }
}
