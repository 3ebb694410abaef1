//! `/metrics`: the live counters of the current snapshot and registry,
//! encoded in the OpenMetrics text format with prometheus-client's
//! `Collector` (values are read at scrape time; nothing is registered on the
//! request path).

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::{Histogram, STATUS_CLASSES};
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

        let routes = registry.all_route_stats();
        counter(
            &mut enc,
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
            &mut enc,
            "weir_route_request_duration_seconds",
            "Time from the request head to the response head, by route.",
            routes
                .iter()
                .map(|(name, s)| (vec![("route", name.to_string())], &s.duration)),
        )?;
        let groups = registry.all_group_stats();
        histogram(
            &mut enc,
            "weir_group_request_duration_seconds",
            "Time from the request head to the response head, by server group.",
            groups
                .iter()
                .map(|(name, s)| (vec![("group", name.to_string())], &s.duration)),
        )?;
        counter(
            &mut enc,
            "weir_group_no_server",
            "Requests answered 503 because no server of the group was usable.",
            groups.iter().map(|(name, s)| {
                (
                    vec![("group", name.to_string())],
                    s.no_server.load(Ordering::Relaxed),
                )
            }),
        )?;

        // Per server: the servers of the current config.
        let servers: Vec<_> = snapshot
            .groups
            .iter()
            .flat_map(|g| g.servers.iter().map(move |s| (g.name.clone(), s)))
            .collect();
        let labels = |g: &str, s: &str| vec![("group", g.to_string()), ("server", s.to_string())];
        counter(
            &mut enc,
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
                &mut enc,
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
        gauge(
            &mut enc,
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
            &mut enc,
            "weir_server_healthy",
            "1 when the server is up by its health checks, 0 when down.",
            servers
                .iter()
                .map(|(g, s)| (labels(g, &s.id), i64::from(s.state.is_healthy()))),
        )?;
        gauge(
            &mut enc,
            "weir_server_drained",
            "1 when the server was drained by hand through the admin API.",
            servers
                .iter()
                .map(|(g, s)| (labels(g, &s.id), i64::from(s.state.is_drained()))),
        )?;

        let now = crate::clock::now_ms();
        gauge(
            &mut enc,
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
            &mut enc,
            "weir_server_response_time_ewma_seconds",
            "Peak-EWMA of the time to response headers (servers with samples only).",
            snapshot.groups.iter().flat_map(|g| {
                g.server_loads().filter_map(move |(s, _, ewma)| {
                    ewma.map(|d| (labels(&g.name, &s.id), d.as_secs_f64()))
                })
            }),
        )?;

        let listeners = registry.all_listener_stats();
        let l = |n: &str| vec![("listener", n.to_string())];
        gauge(
            &mut enc,
            "weir_listener_open_connections",
            "Downstream connections open now.",
            listeners.iter().map(|(n, s)| (l(n), s.open.get())),
        )?;
        gauge(
            &mut enc,
            "weir_listener_parked_connections",
            "Idle keep-alive connections parked now (open, holding no buffers).",
            listeners.iter().map(|(n, s)| (l(n), s.parked.get())),
        )?;
        counter(
            &mut enc,
            "weir_listener_connections",
            "Downstream connections accepted.",
            listeners.iter().map(|(n, s)| (l(n), s.accepted.get())),
        )?;
        counter(
            &mut enc,
            "weir_listener_requests",
            "Requests received (also those weir answered itself).",
            listeners.iter().map(|(n, s)| (l(n), s.requests.get())),
        )?;
        counter(
            &mut enc,
            "weir_tls_handshakes",
            "Completed TLS handshakes.",
            listeners
                .iter()
                .map(|(n, s)| (l(n), s.tls_handshakes.get())),
        )?;
        counter(
            &mut enc,
            "weir_tls_handshake_failures",
            "Failed or timed-out TLS handshakes.",
            listeners.iter().map(|(n, s)| (l(n), s.tls_failures.get())),
        )?;
        counter(
            &mut enc,
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

        crate::limits::metrics::encode(&mut enc, &registry.limits, &listeners)?;
        crate::cache::metrics::encode(&mut enc, &registry.cache)?;

        let global = &registry.global;
        counter(
            &mut enc,
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
            &mut enc,
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
            &mut enc,
            "weir_worker_requests",
            "Requests served by each worker.",
            (0..workers).map(|i| {
                let n = listeners.iter().map(|(_, s)| s.requests.get_shard(i)).sum();
                (w(i), n)
            }),
        )?;
        counter(
            &mut enc,
            "weir_worker_connections",
            "Downstream connections accepted by each worker.",
            (0..workers).map(|i| {
                let n = listeners.iter().map(|(_, s)| s.accepted.get_shard(i)).sum();
                (w(i), n)
            }),
        )?;
        super::edge_metrics::encode(&mut enc, &snapshot, registry)?;
        let log = self.running.access_log();
        counter(
            &mut enc,
            "weir_access_log_lines",
            "Access-log lines written.",
            [(vec![], log.written())],
        )?;
        counter(
            &mut enc,
            "weir_access_log_dropped",
            "Access-log lines dropped because the writer fell behind (or the file could not be written).",
            [(vec![], log.dropped())],
        )?;
        Ok(())
    }
}
