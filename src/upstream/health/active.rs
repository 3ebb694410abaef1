//! Active health checks: one scheduler task per group that probes every
//! server of the group concurrently each round, then sleeps until the next
//! round (interval jittered ±10% so groups do not probe in lockstep; the loop
//! follows pingora's `background.rs`: `sleep_until(next)`, ending on the
//! proxy's shutdown watch).
//!
//! A probe opens its own connection (never the request pool's), so it
//! measures the server rather than a pooled socket: `type: tcp` connects and
//! closes (HAProxy's plain `check`); `type: http` sends one HTTP/1.1 request
//! with `Connection: close` and checks the status (HAProxy `option httpchk`
//! and `http-check expect status`, nginx plus `health_check match=`);
//! `type: grpc` calls `grpc.health.v1.Health/Check` over HTTP/2 (see
//! [`super::grpc`]). Probes of a group with `tls` go over TLS.
//! Connect included, a probe must finish within `timeout`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::passive;
use crate::config::upstream_tls::UpstreamProtocol;
use crate::error::Chain;
use crate::health::state::{HealthCounter, Transition};
use crate::health::{HealthCheck, HttpProbe, ProbeKind};
use crate::upstream::connect::{self, connect_stream, Connector};
use crate::upstream::tls::UpstreamStream;
use crate::upstream::{Server, ServerGroup};

/// Runs the probes of `group` until `shutdown` turns true (or its sender
/// goes away). Servers keep their current state (new servers start up) and
/// are probed at once.
pub async fn run(group: Arc<ServerGroup>, check: HealthCheck, mut shutdown: watch::Receiver<bool>) {
    let check = Arc::new(check);
    let mut counters: Vec<HealthCounter> = group
        .servers
        .iter()
        .map(|s| {
            HealthCounter::new(
                s.state.is_healthy(),
                check.healthy_threshold,
                check.unhealthy_threshold,
            )
        })
        .collect();
    let mut jitter = Jitter::new();
    let mut next = Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let start = Instant::now();
        let mut round = JoinSet::new();
        for i in 0..group.servers.len() {
            let group = Arc::clone(&group);
            let check = Arc::clone(&check);
            round.spawn(async move { (i, probe(&group, &group.servers[i], &check).await) });
        }
        loop {
            let joined = tokio::select! {
                j = round.join_next() => j,
                _ = shutdown.changed() => return,
            };
            let Some(joined) = joined else { break };
            let Ok((i, result)) = joined else { continue };
            apply(&group, &check, i, &mut counters[i], result);
        }
        // Rounds never overlap: a slow round delays the next one.
        next = (start + jitter.around(check.interval)).max(Instant::now());
    }
}

fn apply(
    group: &ServerGroup,
    check: &HealthCheck,
    i: usize,
    counter: &mut HealthCounter,
    result: Result<String, String>,
) {
    let server = &group.servers[i];
    let passed = result.is_ok();
    if passed {
        passive::probe_passed(&group.name, server);
    }
    let Some(t) = counter.record(passed) else {
        tracing::trace!(target: "weir::health", group = %group.name, server = %server.id, ?result, "probe");
        return;
    };
    server.state.set_healthy(t.healthy);
    log_flip(&group.name, server, check, t, &result);
}

fn log_flip(
    group: &str,
    server: &Server,
    check: &HealthCheck,
    t: Transition,
    result: &Result<String, String>,
) {
    let kind = match check.kind {
        ProbeKind::Http(_) => "http",
        ProbeKind::Tcp => "tcp",
        ProbeKind::Grpc(_) => "grpc",
    };
    crate::metrics::inc(&server.state.stats.health_transitions);
    match result {
        Ok(detail) => tracing::info!(
            target: "weir::health",
            group = %group,
            server = %server.id,
            address = %server.address,
            transition = t.arrow(),
            reason = %format_args!("{} consecutive {kind} probes passed (last: {detail})", t.after),
            "server health changed"
        ),
        Err(detail) => tracing::warn!(
            target: "weir::health",
            group = %group,
            server = %server.id,
            address = %server.address,
            transition = t.arrow(),
            reason = %format_args!("{} consecutive {kind} probes failed (last: {detail})", t.after),
            "server health changed"
        ),
    }
}

/// Probes `server` of `group` once. `Ok` carries a short description of
/// the pass, `Err` the reason of the failure (for the log line of a flip).
/// HTTP and gRPC probes of a group with `tls` go over TLS (verified like
/// requests); HTTP probes of an `http2` group, and gRPC probes always, use
/// HTTP/2 (h2 by ALPN over TLS, h2c without).
pub async fn probe(
    group: &ServerGroup,
    server: &Server,
    check: &HealthCheck,
) -> Result<String, String> {
    let attempt = async {
        let protocol = match &check.kind {
            ProbeKind::Tcp => {
                connect_stream(&server.address, server.resolved)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                return Ok("connected".to_string());
            }
            ProbeKind::Grpc(_) => UpstreamProtocol::Http2,
            ProbeKind::Http(_) => group.protocol,
        };
        let connector = Connector {
            timeout: check.timeout,
            tls: group.tls.as_deref(),
            protocol,
            // Probes send no PROXY header (docs/edge.md).
            proxy: None,
        };
        let stream = connect::open(&server.address, server.resolved, connector)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let scheme = if group.tls.is_some() { "https" } else { "http" };
        match &check.kind {
            ProbeKind::Tcp => Ok("connected".to_string()),
            ProbeKind::Grpc(g) => {
                super::grpc::probe(stream, scheme, server.address.as_str(), g).await
            }
            ProbeKind::Http(http) if protocol == UpstreamProtocol::Http2 => {
                http2_probe(server, http, stream, scheme).await
            }
            ProbeKind::Http(http) => http_probe(server, http, stream).await,
        }
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timed out after {}",
            humantime::format_duration(check.timeout)
        )),
    }
}

async fn http_probe(
    server: &Server,
    http: &HttpProbe,
    stream: UpstreamStream,
) -> Result<String, String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let host = match &http.host {
        Some(h) => h.clone(),
        None => HeaderValue::from_str(server.address.as_str())
            .map_err(|_| "server address is not a valid Host header".to_string())?,
    };
    let req = Request::builder()
        .method(http.method.clone())
        .uri(http.path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, HeaderValue::from_static("weir-health-check"))
        .header(CONNECTION, HeaderValue::from_static("close"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    tokio::pin!(conn);
    let send = sender.send_request(req);
    tokio::pin!(send);
    // Drive the connection until the response head arrives. With
    // `Connection: close` the connection may finish in the same poll as the
    // response: then the response is already in `send`.
    let resp = tokio::select! {
        biased;
        r = &mut send => r,
        c = &mut conn => match c {
            Ok(()) => send.await,
            Err(e) => return Err(format!("connection: {}", Chain(&e))),
        },
    }
    .map_err(|e| format!("request: {}", Chain(&e)))?;
    expect(http, resp.status())
}

/// An HTTP probe over HTTP/2 (`http2` groups): the same request, with the
/// `Host` as `:authority`.
async fn http2_probe(
    server: &Server,
    http: &HttpProbe,
    stream: UpstreamStream,
    scheme: &str,
) -> Result<String, String> {
    let authority = match &http.host {
        Some(h) => h.to_str().unwrap_or(server.address.as_str()).to_string(),
        None => server.address.as_str().to_string(),
    };
    let req = Request::builder()
        .method(http.method.clone())
        .uri(format!("{scheme}://{authority}{}", http.path.as_str()))
        .header(USER_AGENT, HeaderValue::from_static("weir-health-check"))
        .body(http_body_util::Full::new(Bytes::new()))
        .map_err(|e| format!("request: {e}"))?;
    let resp = super::grpc::h2_send(stream, req).await?;
    expect(http, resp.status())
}

fn expect(http: &HttpProbe, status: http::StatusCode) -> Result<String, String> {
    if http.expected.matches(status.as_u16()) {
        Ok(format!("status {}", status.as_u16()))
    } else {
        Err(format!(
            "status {}, expected {}",
            status.as_u16(),
            http.expected
        ))
    }
}

/// A small xorshift generator for the ±10% interval jitter (seeded from the
/// std hasher's per-process random keys; not for anything secret).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        Jitter(RandomState::new().hash_one(0u64) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `interval` × a uniform factor in [0.9, 1.1].
    fn around(&mut self, interval: Duration) -> Duration {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        interval.mul_f64(0.9 + 0.2 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut j = Jitter::new();
        let base = Duration::from_secs(10);
        let mut lo = Duration::MAX;
        let mut hi = Duration::ZERO;
        for _ in 0..10_000 {
            let d = j.around(base);
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(lo >= Duration::from_secs(9) && hi <= Duration::from_secs(11));
        // It does spread: both ends of the range are reached closely.
        assert!(lo < Duration::from_millis(9100) && hi > Duration::from_millis(10900));
    }
}
