//! `/metrics`: the live counters of the current snapshot and registry,
//! encoded in the OpenMetrics text format with prometheus-client's
//! `Collector` (values are read at scrape time; nothing is registered on the
//! request path).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::{
    GlobalStats, GroupStats, Histogram, ListenerStats, RouteStats, STATUS_CLASSES,
};
use crate::proxy::access_log::AccessLog;
use crate::proxy::Snapshot;
use crate::upstream::Server;
use crate::Running;

/// Renders every metric of `running` in the OpenMetrics text format.
pub fn render(running: &Running) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        running: running.clone(),
    }));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

#[derive(Debug)]
struct Scrape {
    running: Running,
}

/// Encodes one counter family.
pub(crate) fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes one gauge family.
pub(crate) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, i64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge_f64(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, &'a Histogram)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        let buckets = h.cumulative();
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum_secs(),
            h.count(),
            &buckets,
            None,
        )?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let registry = self.running.registry();
        let snapshot = self.running.snapshot();
        let enc = &mut enc;
        encode_routes(enc, &registry.all_route_stats())?;
        encode_groups(enc, &registry.all_group_stats())?;
        // Per server: the servers of the current config.
        let servers: Vec<_> = snapshot
            .groups
            .iter()
            .flat_map(|g| g.servers.iter().map(move |s| (g.name.clone(), s)))
            .collect();
        encode_server_counters(enc, &servers)?;
        encode_server_gauges(enc, &snapshot, &servers)?;
        let listeners = registry.all_listener_stats();
        encode_listeners(enc, &listeners)?;
        super::limits_metrics::encode(enc, &registry.limits, &listeners)?;
        crate::cache::metrics::encode(enc, &registry.cache)?;
        encode_global(enc, &registry.global, &listeners)?;
        super::edge_metrics::encode(enc, &snapshot, registry)?;
        encode_access_log(enc, self.running.access_log())
    }
}

/// A server of the current config, with its group's name.
type ServerRow<'a> = (Arc<str>, &'a Server);
/// Named counters, sorted by name.
type Named<T> = [(Arc<str>, Arc<T>)];

/// `weir_route_*`: requests and durations by route.
fn encode_routes(enc: &mut DescriptorEncoder, routes: &Named<RouteStats>) -> std::fmt::Result {
    counter(
        enc,
        "weir_route_requests",
        "Requests answered, by route and status class.",
        routes.iter().flat_map(|(name, s)| {
            STATUS_CLASSES.iter().enumerate().map(move |(i, class)| {
                (
                    vec![("route", name.to_string()), ("class", class.to_string())],
                    s.requests.get(i),
                )
            })
        }),
    )?;
    histogram(
        enc,
        "weir_route_request_duration_seconds",
        "Time from the request head to the response head, by route.",
        routes
            .iter()
            .map(|(name, s)| (vec![("route", name.to_string())], &s.duration)),
    )?;
    Ok(())
}

/// `weir_group_*`: durations and 503s for lack of a server, by group.
fn encode_groups(enc: &mut DescriptorEncoder, groups: &Named<GroupStats>) -> std::fmt::Result {
    histogram(
        enc,
        "weir_group_request_duration_seconds",
        "Time from the request head to the response head, by server group.",
        groups
            .iter()
            .map(|(name, s)| (vec![("group", name.to_string())], &s.duration)),
    )?;
    counter(
        enc,
        "weir_group_no_server",
        "Requests answered 503 because no server of the group was usable.",
        groups.iter().map(|(name, s)| {
            (
                vec![("group", name.to_string())],
                s.no_server.load(Ordering::Relaxed),
            )
        }),
    )?;

    Ok(())
}

/// The `group` and `server` labels of a server.
fn labels(g: &str, s: &str) -> Vec<(&'static str, String)> {
    vec![("group", g.to_string()), ("server", s.to_string())]
}

/// The counters of each server: responses by class, upstream errors,
/// retries and health transitions.
fn encode_server_counters(
    enc: &mut DescriptorEncoder,
    servers: &[ServerRow<'_>],
) -> std::fmt::Result {
    counter(
        enc,
        "weir_server_requests",
        "Responses sent for each server, by status class (including 502/504 weir answered for it).",
        servers.iter().flat_map(|(g, s)| {
            STATUS_CLASSES.iter().enumerate().map(move |(i, class)| {
                let mut l = labels(g, &s.id);
                l.push(("class", class.to_string()));
                (l, s.state.stats.responses.get(i))
            })
        }),
    )?;
    for (name, help, pick) in [
        (
            "weir_upstream_connect_errors",
            "Failed connection attempts to each server.",
            0,
        ),
        (
            "weir_upstream_timeouts",
            "Requests whose response headers did not arrive within timeouts.response.",
            1,
        ),
        (
            "weir_upstream_protocol_errors",
            "Requests that failed after connecting (reset, closed, invalid response).",
            2,
        ),
        (
            "weir_upstream_retries",
            "Requests retried on another server after failing on this one.",
            3,
        ),
        (
            "weir_server_health_transitions",
            "Health state flips of each server.",
            4,
        ),
    ] {
        counter(
            enc,
            name,
            help,
            servers.iter().map(|(g, s)| {
                let st = &s.state.stats;
                let c = match pick {
                    0 => &st.connect_errors,
                    1 => &st.timeouts,
                    2 => &st.protocol_errors,
                    3 => &st.retries,
                    _ => &st.health_transitions,
                };
                (labels(g, &s.id), c.load(Ordering::Relaxed))
            }),
        )?;
    }
    Ok(())
}

/// The gauges of each server: in flight, health, drain, ejection, EWMA.
fn encode_server_gauges(
    enc: &mut DescriptorEncoder,
    snapshot: &Snapshot,
    servers: &[ServerRow<'_>],
) -> std::fmt::Result {
    gauge(
        enc,
        "weir_server_in_flight",
        "Requests sent to each server whose response has not ended.",
        servers.iter().map(|(g, s)| {
            (
                labels(g, &s.id),
                i64::try_from(s.state.in_flight()).unwrap_or(i64::MAX),
            )
        }),
    )?;
    gauge(
        enc,
        "weir_server_healthy",
        "1 when the server is up by its health checks, 0 when down.",
        servers
            .iter()
            .map(|(g, s)| (labels(g, &s.id), i64::from(s.state.is_healthy()))),
    )?;
    gauge(
        enc,
        "weir_server_drained",
        "1 when the server was drained by hand through the admin API.",
        servers
            .iter()
            .map(|(g, s)| (labels(g, &s.id), i64::from(s.state.is_drained()))),
    )?;

    let now = crate::clock::now_ms();
    gauge(
        enc,
        "weir_server_ejected",
        "1 while passive health checks keep the server ejected.",
        servers.iter().map(|(g, s)| {
            (
                labels(g, &s.id),
                i64::from(s.state.passive.is_ejected_at(now)),
            )
        }),
    )?;
    gauge_f64(
        enc,
        "weir_server_response_time_ewma_seconds",
        "Peak-EWMA of the time to response headers (servers with samples only).",
        snapshot.groups.iter().flat_map(|g| {
            g.server_loads().filter_map(move |(s, _, ewma)| {
                ewma.map(|d| (labels(&g.name, &s.id), d.as_secs_f64()))
            })
        }),
    )?;

    Ok(())
}

/// `weir_listener_*`, `weir_tls_*` and `weir_downstream_rejected`, by listener.
fn encode_listeners(
    enc: &mut DescriptorEncoder,
    listeners: &Named<ListenerStats>,
) -> std::fmt::Result {
    let l = |n: &str| vec![("listener", n.to_string())];
    gauge(
        enc,
        "weir_listener_open_connections",
        "Downstream connections open now.",
        listeners.iter().map(|(n, s)| (l(n), s.open.get())),
    )?;
    gauge(
        enc,
        "weir_listener_parked_connections",
        "Idle keep-alive connections parked now (open, holding no buffers).",
        listeners.iter().map(|(n, s)| (l(n), s.parked.get())),
    )?;
    counter(
        enc,
        "weir_listener_connections",
        "Downstream connections accepted.",
        listeners.iter().map(|(n, s)| (l(n), s.accepted.get())),
    )?;
    counter(
        enc,
        "weir_listener_requests",
        "Requests received (also those weir answered itself).",
        listeners.iter().map(|(n, s)| (l(n), s.requests.get())),
    )?;
    counter(
        enc,
        "weir_tls_handshakes",
        "Completed TLS handshakes.",
        listeners
            .iter()
            .map(|(n, s)| (l(n), s.tls_handshakes.get())),
    )?;
    counter(
        enc,
        "weir_tls_handshake_failures",
        "Failed or timed-out TLS handshakes.",
        listeners.iter().map(|(n, s)| (l(n), s.tls_failures.get())),
    )?;
    counter(
        enc,
        "weir_downstream_rejected",
        "Requests weir refused itself (400/405/408/431), by reason; none reached a server.",
        listeners.iter().flat_map(|(n, s)| {
            s.rejected.all().map(move |(r, v)| {
                (
                    vec![
                        ("listener", n.to_string()),
                        ("reason", r.as_str().to_string()),
                    ],
                    v,
                )
            })
        }),
    )?;

    Ok(())
}

/// Reloads, the config hash, and the requests and connections of each worker.
fn encode_global(
    enc: &mut DescriptorEncoder,
    global: &GlobalStats,
    listeners: &Named<ListenerStats>,
) -> std::fmt::Result {
    counter(
        enc,
        "weir_reloads",
        "Config reloads, by result.",
        [
            (
                vec![("result", "ok".to_string())],
                global.reloads_ok.load(Ordering::Relaxed),
            ),
            (
                vec![("result", "failed".to_string())],
                global.reloads_failed.load(Ordering::Relaxed),
            ),
        ],
    )?;
    gauge(
        enc,
        "weir_config_info",
        "The running config: its FNV-1a hash as a label.",
        [(
            vec![(
                "hash",
                format!("{:016x}", global.config_hash.load(Ordering::Relaxed)),
            )],
            1,
        )],
    )?;
    let workers = global.workers.load(Ordering::Relaxed);
    let w = |i: usize| vec![("worker", i.to_string())];
    counter(
        enc,
        "weir_worker_requests",
        "Requests served by each worker.",
        (0..workers).map(|i| {
            let n = listeners.iter().map(|(_, s)| s.requests.get_shard(i)).sum();
            (w(i), n)
        }),
    )?;
    counter(
        enc,
        "weir_worker_connections",
        "Downstream connections accepted by each worker.",
        (0..workers).map(|i| {
            let n = listeners.iter().map(|(_, s)| s.accepted.get_shard(i)).sum();
            (w(i), n)
        }),
    )?;
    Ok(())
}

/// `weir_access_log_*`.
fn encode_access_log(enc: &mut DescriptorEncoder, log: &AccessLog) -> std::fmt::Result {
    counter(
        enc,
        "weir_access_log_lines",
        "Access-log lines written.",
        [(vec![], log.written())],
    )?;
    counter(
            enc,
            "weir_access_log_dropped",
            "Access-log lines dropped because the writer fell behind (or the file could not be written).",
            [(vec![], log.dropped())],
        )?;
    Ok(())
}
