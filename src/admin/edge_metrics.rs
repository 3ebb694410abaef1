//! `/metrics` and `/status` additions of issue 14: the group queues
//! (length, waits, refusals), per-server `max_connections`, backup and
//! slow-start state, and the listeners' PROXY protocol errors.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use serde_json::json;

use super::prometheus::{counter, gauge};
use crate::proxy::Snapshot;
use crate::upstream::{ServerGroup, StateRegistry};

/// Encodes the queue and PROXY protocol families.
pub(crate) fn encode(
    enc: &mut DescriptorEncoder,
    snapshot: &Snapshot,
    registry: &StateRegistry,
) -> std::fmt::Result {
    let groups = &snapshot.groups;
    let label = |g: &ServerGroup| vec![("group", g.name.to_string())];
    gauge(
        enc,
        "weir_group_queue_length",
        "Requests waiting in the group's queue for a server slot (max_connections).",
        groups.iter().map(|g| (label(g), g.edge.queue.len() as i64)),
    )?;
    counter(
        enc,
        "weir_group_queued",
        "Requests that waited in the group's queue.",
        groups
            .iter()
            .map(|g| (label(g), g.edge.queue.queued.load(Ordering::Relaxed))),
    )?;
    counter(
        enc,
        "weir_group_queue_rejected",
        "Requests answered 503 by the queue: reason full (queue.max waiting) or timeout (queue.timeout).",
        groups.iter().flat_map(|g| {
            let q = &g.edge.queue;
            [
                (
                    vec![("group", g.name.to_string()), ("reason", "full".into())],
                    q.rejected_full.load(Ordering::Relaxed),
                ),
                (
                    vec![("group", g.name.to_string()), ("reason", "timeout".into())],
                    q.timeouts.load(Ordering::Relaxed),
                ),
            ]
        }),
    )?;
    let mut m = enc.encode_descriptor(
        "weir_group_queue_wait_seconds",
        "Total time requests spent waiting in the group's queue.",
        None,
        MetricType::Counter,
    )?;
    for g in groups {
        let secs = g.edge.queue.wait_us_sum.load(Ordering::Relaxed) as f64 / 1e6;
        ConstCounter::new(secs).encode(m.encode_family(&label(g))?)?;
    }
    counter(
        enc,
        "weir_listener_proxy_protocol_errors",
        "Connections closed because their PROXY protocol header was missing, invalid or late.",
        registry.all_listener_stats().into_iter().map(|(n, s)| {
            (
                vec![("listener", n.to_string())],
                s.proxy_protocol_errors.get(),
            )
        }),
    )?;
    Ok(())
}

/// The queue fields of a group's `/status` entry.
pub fn group_status(g: &ServerGroup) -> serde_json::Value {
    let q = &g.edge.queue;
    let waited = q.queued.load(Ordering::Relaxed);
    json!({
        "length": q.len(),
        "max": g.edge.config.queue.max,
        "timeout_ms": g.edge.config.queue.timeout.as_millis() as u64,
        "queued": waited,
        "rejected_full": q.rejected_full.load(Ordering::Relaxed),
        "timeouts": q.timeouts.load(Ordering::Relaxed),
        "wait_ms_avg": if waited == 0 { 0.0 } else { q.wait_us_sum.load(Ordering::Relaxed) as f64 / 1e3 / waited as f64 },
        "wait_ms_max": q.wait_us_max.load(Ordering::Relaxed) as f64 / 1e3,
    })
}

/// The edge fields of server `i`'s `/status` entry.
pub fn server_status(g: &ServerGroup, i: usize) -> serde_json::Value {
    let s = &g.servers[i];
    json!({
        "max_connections": s.edge.max_connections,
        "backup": s.edge.backup,
        "slow_start_factor": g.ramp_factor(i),
    })
}
