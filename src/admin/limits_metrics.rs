//! The protection metrics on `/metrics` (read at scrape time from the
//! registry's atomics).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::prometheus::{counter, gauge};
use crate::limits::runtime::LimitsRegistry;
use crate::metrics::ListenerStats;

/// Encodes every protection metric.
///
/// # Errors
/// When the encoder fails.
pub fn encode(
    enc: &mut DescriptorEncoder,
    limits: &LimitsRegistry,
    listeners: &[(Arc<str>, Arc<ListenerStats>)],
) -> std::fmt::Result {
    encode_rate_limits(enc, limits)?;
    encode_local_stores(enc, limits)?;
    encode_routes(enc, limits)?;
    encode_connection_limits(enc, listeners)
}

/// `weir_rate_limited` by route and policy, and the Redis errors by policy.
fn encode_rate_limits(enc: &mut DescriptorEncoder, limits: &LimitsRegistry) -> std::fmt::Result {
    counter(
        enc,
        "weir_rate_limited",
        "Requests refused with 429, by route and the policy that refused them.",
        limits
            .rate_limited()
            .into_iter()
            .map(|(r, p, n)| (vec![("route", r.to_string()), ("policy", p.to_string())], n)),
    )?;
    let policies = limits.policy_stats();
    counter(
        enc,
        "weir_rate_limit_redis_errors",
        "Requests whose Redis check failed (timeout, connection), by policy and the on_error action taken.",
        policies.iter().flat_map(|(p, c)| {
            [
                (
                    vec![("policy", p.to_string()), ("action", "allow".to_string())],
                    c.redis_failed_open.load(Ordering::Relaxed),
                ),
                (
                    vec![("policy", p.to_string()), ("action", "deny".to_string())],
                    c.redis_failed_closed.load(Ordering::Relaxed),
                ),
            ]
        }),
    )?;
    Ok(())
}

/// The key stores of the local rate-limit policies.
fn encode_local_stores(enc: &mut DescriptorEncoder, limits: &LimitsRegistry) -> std::fmt::Result {
    let stores = limits.local_stores();
    let p = |n: &str| vec![("policy", n.to_string())];
    gauge(
        enc,
        "weir_rate_limit_keys",
        "Keys held by each local rate-limit policy.",
        stores
            .iter()
            .map(|(n, len, ..)| (p(n), i64::try_from(*len).unwrap_or(i64::MAX))),
    )?;
    gauge(
        enc,
        "weir_rate_limit_max_keys",
        "The key cap of each local rate-limit policy (max_keys).",
        stores
            .iter()
            .map(|(n, _, max, ..)| (p(n), i64::try_from(*max).unwrap_or(i64::MAX))),
    )?;
    counter(
        enc,
        "weir_rate_limit_evictions",
        "Keys evicted from a local rate-limit policy to stay under max_keys.",
        stores.iter().map(|(n, _, _, ev, _)| (p(n), *ev)),
    )?;
    gauge(
        enc,
        "weir_rate_limit_store_bytes",
        "Memory held by each local rate-limit policy's key store.",
        stores
            .iter()
            .map(|(n, .., bytes)| (p(n), i64::try_from(*bytes).unwrap_or(i64::MAX))),
    )?;
    Ok(())
}

/// The refusals of the routes' IP rules and body limits.
fn encode_routes(enc: &mut DescriptorEncoder, limits: &LimitsRegistry) -> std::fmt::Result {
    let routes = limits.route_stats();
    let r = |n: &str| vec![("route", n.to_string())];
    counter(
        enc,
        "weir_ip_denied",
        "Requests refused with 403 by a route's allow/deny rules.",
        routes
            .iter()
            .map(|(n, c)| (r(n), c.ip_denied.load(Ordering::Relaxed))),
    )?;
    counter(
        enc,
        "weir_request_body_too_large",
        "Requests refused with 413 by a route's max_request_body.",
        routes
            .iter()
            .map(|(n, c)| (r(n), c.body_too_large.load(Ordering::Relaxed))),
    )?;
    Ok(())
}

/// The listeners' `max_connections` and `max_connections_per_ip`.
fn encode_connection_limits(
    enc: &mut DescriptorEncoder,
    listeners: &[(Arc<str>, Arc<ListenerStats>)],
) -> std::fmt::Result {
    let l = |n: &str| vec![("listener", n.to_string())];
    let limited: Vec<_> = listeners.iter().map(|(n, s)| (n, &s.conn_limit)).collect();
    gauge(
        enc,
        "weir_listener_max_connections",
        "The listener's max_connections (0 = no cap).",
        limited
            .iter()
            .map(|(n, c)| (l(n), i64::try_from(c.max().unwrap_or(0)).unwrap_or(0))),
    )?;
    gauge(
        enc,
        "weir_listener_at_max_connections",
        "1 while the listener is at max_connections and new connections wait in the backlog.",
        limited
            .iter()
            .map(|(n, c)| (l(n), i64::from(c.at_capacity()))),
    )?;
    counter(
        enc,
        "weir_listener_max_connections_waits",
        "Times the accept loop stopped accepting at max_connections.",
        limited.iter().map(|(n, c)| (l(n), c.pauses())),
    )?;
    gauge(
        enc,
        "weir_listener_max_connections_per_ip",
        "The listener's max_connections_per_ip (0 = no cap).",
        limited.iter().map(|(n, c)| {
            (
                l(n),
                i64::try_from(c.max_per_ip().unwrap_or(0)).unwrap_or(0),
            )
        }),
    )?;
    gauge(
        enc,
        "weir_listener_client_addresses",
        "Client addresses with open connections counted against max_connections_per_ip.",
        limited
            .iter()
            .map(|(n, c)| (l(n), i64::try_from(c.tracked_ips()).unwrap_or(i64::MAX))),
    )?;
    counter(
        enc,
        "weir_listener_per_ip_rejected",
        "Connections closed at once because their address was at max_connections_per_ip.",
        limited.iter().map(|(n, c)| (l(n), c.rejected_per_ip())),
    )?;
    Ok(())
}
