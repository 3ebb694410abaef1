//! Workers per core: several worker threads, each with its own accept
//! socket per listener (SO_REUSEPORT), pools and counter shards; reload,
//! metrics, least_connections, health probes and shutdown across them.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use support::*;

/// One keep-alive HTTP/1.1 connection to `addr`, and the worker that
/// accepted it (read from the per-worker accept counters).
async fn connection(proxy: &weir::Running, addr: SocketAddr) -> (SendRequest<Full<Bytes>>, usize) {
    let before = accepted_per_worker(proxy);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let worker = within(5, "accept counted", async {
        loop {
            let now = accepted_per_worker(proxy);
            if let Some(w) = (0..now.len()).find(|&i| now[i] > before[i]) {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    (sender, worker)
}

fn accepted_per_worker(proxy: &weir::Running) -> Vec<u64> {
    let stats = proxy.registry().all_listener_stats();
    let workers = proxy
        .registry()
        .global
        .workers
        .load(std::sync::atomic::Ordering::Relaxed);
    (0..workers)
        .map(|i| stats.iter().map(|(_, s)| s.accepted.get_shard(i)).sum())
        .collect()
}

/// Connections until every one of `workers` has at least one (the kernel
/// spreads them by a hash of the addresses; bounded at 200 tries).
async fn one_per_worker(
    proxy: &weir::Running,
    addr: SocketAddr,
    workers: usize,
) -> Vec<SendRequest<Full<Bytes>>> {
    let mut by_worker: Vec<Option<SendRequest<Full<Bytes>>>> = (0..workers).map(|_| None).collect();
    for _ in 0..200 {
        let (c, w) = connection(proxy, addr).await;
        if by_worker[w].is_none() {
            by_worker[w] = Some(c);
        }
        if by_worker.iter().all(Option::is_some) {
            return by_worker.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("200 connections did not reach all {workers} workers");
}

async fn get_on(c: &mut SendRequest<Full<Bytes>>, path: &str) -> (StatusCode, String) {
    c.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", "test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within(10, "response", c.send_request(req)).await.unwrap();
    let status = resp.status();
    let server = resp
        .headers()
        .get("x-server")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    resp.into_body().collect().await.unwrap();
    (status, server)
}

fn two_groups(a: &Upstream, b: &Upstream, route_to: &str) -> String {
    format!(
        "workers: 2\nlisteners:\n  - name: web\n    address: 127.0.0.1:0\nroutes:\n  - group: {route_to}\n\
         groups:\n  ga:\n    servers:\n{}  gb:\n    servers:\n{}",
        servers_yaml(&[(a, 1)]),
        servers_yaml(&[(b, 1)])
    )
}

#[tokio::test]
async fn two_workers_serve_and_a_reload_reaches_both() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let proxy = start_proxy(&two_groups(&a, &b, "ga")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut conns = one_per_worker(&proxy, addr, 2).await;
    for c in &mut conns {
        assert_eq!(get_on(c, "/").await, (StatusCode::OK, "a".into()));
    }
    // The same keep-alive connections, one on each worker, see the new
    // route at once.
    proxy
        .apply(config(&two_groups(&a, &b, "gb")))
        .await
        .unwrap();
    for c in &mut conns {
        assert_eq!(get_on(c, "/").await, (StatusCode::OK, "b".into()));
    }
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn metrics_sum_the_requests_of_every_worker() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let yaml = two_groups(&a, &b, "ga")
        .replace("listeners:", "admin:\n  address: 127.0.0.1:0\nlisteners:");
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut conns = one_per_worker(&proxy, addr, 2).await;
    // 30 on one worker's connection, 20 on the other's.
    for _ in 0..30 {
        get_on(&mut conns[0], "/").await;
    }
    for _ in 0..20 {
        get_on(&mut conns[1], "/").await;
    }
    let text = get(proxy.admin_addr().unwrap(), "/metrics").await.text();
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
    };
    assert_eq!(sample(r#"weir_worker_requests_total{worker="0"}"#), 30.0);
    assert_eq!(sample(r#"weir_worker_requests_total{worker="1"}"#), 20.0);
    assert_eq!(
        sample(r#"weir_route_requests_total{route="route-1",class="2xx"}"#),
        50.0
    );
    assert_eq!(
        sample(r#"weir_server_requests_total{group="ga",server="a",class="2xx"}"#),
        50.0
    );
    assert_eq!(
        sample(r#"weir_route_request_duration_seconds_count{route="route-1"}"#),
        50.0
    );
    assert_eq!(a.hits(), 50);
    proxy.shutdown().await;
}

/// A request in flight on one worker makes `least_connections` on the other
/// worker avoid that server: the in-flight count is shared by all workers.
#[tokio::test]
async fn least_connections_sees_in_flight_requests_of_every_worker() {
    let slow = |name: &'static str| {
        spawn_upstream_with(name, move |req| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            text_response(StatusCode::OK, name, name)
        })
    };
    let a = slow("a").await;
    let b = slow("b").await;
    let proxy = start_proxy(&format!(
        "workers: 2\nlisteners:\n  - name: web\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n    algorithm: least_connections\n    servers:\n{}",
        servers_yaml(&[(&a, 1), (&b, 1)])
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let mut conns = one_per_worker(&proxy, addr, 2).await;
    let mut busy_conn = conns.remove(0);
    let slow_request = tokio::spawn(async move { get_on(&mut busy_conn, "/slow").await });
    let state = |u: &Upstream| {
        proxy.snapshot().groups[0]
            .servers
            .iter()
            .find(|s| *s.id == u.name)
            .unwrap()
            .state
            .clone()
    };
    let (sa, sb) = (state(&a), state(&b));
    within(5, "slow request in flight", async {
        while sa.in_flight() + sb.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let busy = if sa.in_flight() == 1 { "a" } else { "b" };
    let mut other = 0;
    for _ in 0..10 {
        let (status, server) = get_on(&mut conns[0], "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(server, busy, "least_connections sent to the busy server");
        other += 1;
    }
    assert_eq!(other, 10);
    let (status, server) = slow_request.await.unwrap();
    assert_eq!((status, server.as_str()), (StatusCode::OK, busy));
    proxy.shutdown().await;
}

/// Probes run once per server on the control runtime, not once per worker:
/// with 4 workers and `interval: 1s`, 10 s of (paused) time bring about 10
/// probes to the server, not 40.
#[tokio::test(start_paused = true)]
async fn probes_follow_the_interval_whatever_the_worker_count() {
    let probes = Arc::new(AtomicUsize::new(0));
    let seen = probes.clone();
    let a = spawn_upstream_with("a", move |req| {
        let seen = seen.clone();
        async move {
            if req.uri().path() == "/healthz" {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            text_response(StatusCode::OK, "a", "a")
        }
    })
    .await;
    let proxy = start_proxy(&format!(
        "workers: 4\nlisteners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n    servers:\n{}    health_check:\n      path: /healthz\n      interval: 1s\n      timeout: 500ms\n",
        servers_yaml(&[(&a, 1)])
    ))
    .await;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = probes.load(Ordering::SeqCst);
    assert!((9..=12).contains(&n), "{n} probes in 10 s at interval 1s");
    proxy.shutdown().await;
}
