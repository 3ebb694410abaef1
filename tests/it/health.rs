//! Health checks and failover (issue 5): active HTTP/TCP probes with
//! rise/fall thresholds, passive ejection with doubling backoff, retries of
//! safe requests, 503 + Retry-After, fail_open, and the headline test: a
//! server dies and comes back under load with zero failed requests.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::*;
use weir::upstream::{ServerGroup, ServerState, StateRegistry};
use weir::ErrorKind;

/// A one-route config whose group `g` has `servers` and the extra group keys
/// `extra` (each line indented by 4 spaces).
fn yaml(servers: &str, extra: &str) -> String {
    ConfigYaml::new().group("g", extra, servers).build()
}

fn state(proxy: &weir::Running, id: &str) -> Arc<ServerState> {
    proxy.registry().state(&Arc::from("g"), &Arc::from(id))
}

/// Polls the check `cond` until it holds ([`wait_until`]); fails after `limit`.
async fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    wait_until(limit.as_secs(), what, || std::future::ready(cond())).await;
}

// === active checks: exact thresholds ===

/// The upstream scripts the probe answers (200 for probes 1-3, 503 for 4-8,
/// 200 from 9 on) and records, at the arrival of each probe, whether weir
/// considers it up. Probe n sees the result of probes 1..n-1, so with
/// fall 3 / rise 2 the server must be down exactly from probe 7 (after
/// failures 4, 5, 6) and up again exactly from probe 11 (after passes 9, 10).
#[tokio::test]
async fn down_after_exactly_unhealthy_threshold_up_after_healthy_threshold() {
    let seen: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    let live: Arc<OnceLock<Arc<ServerState>>> = Arc::default();
    let (seen2, live2) = (seen.clone(), live.clone());
    let probes = Arc::new(AtomicUsize::new(0));
    let up = spawn_upstream_with("a", move |req| {
        let (seen, live, probes) = (seen2.clone(), live2.clone(), probes.clone());
        async move {
            if req.uri().path() != "/healthz" {
                return text_response(StatusCode::OK, "a", "a");
            }
            let n = probes.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(state) = live.get() {
                seen.lock().unwrap().push((n, state.is_healthy()));
            }
            let status = if (4..=8).contains(&n) { 503 } else { 200 };
            text_response(StatusCode::from_u16(status).unwrap(), "a", "probe")
        }
    })
    .await;
    // The state exists before the proxy starts (the registry creates it), so
    // the very first probe is recorded too.
    let config = support::config(&yaml(
        &servers_yaml(&[(&up, 1)]),
        "    health_check:\n      path: /healthz\n      interval: 30ms\n      timeout: 1s\n      healthy_threshold: 2\n      unhealthy_threshold: 3\n",
    ));
    let proxy = weir::Proxy::new(config);
    let running = proxy.start().await.unwrap();
    live.set(state(&running, "a")).unwrap();
    wait_for("12 probes", Duration::from_secs(20), || {
        seen.lock().unwrap().last().is_some_and(|(n, _)| *n >= 12)
    })
    .await;
    // Probe n's arrival shows the state after probes 1..n-1. Probe 1 may have
    // arrived before `live` was set: align the recorded tail with the script.
    let recorded = seen.lock().unwrap().clone();
    assert!(
        recorded[0].0 <= 2,
        "probe 2 onwards is recorded: {recorded:?}"
    );
    for &(n, healthy) in recorded.iter().filter(|(n, _)| *n <= 12) {
        let expected = !(7..=10).contains(&n);
        assert_eq!(
            healthy, expected,
            "health at the arrival of probe {n}: {recorded:?}"
        );
    }
    assert!(running.shutdown().await);
}

/// With `expected_status: "200"`, a 204 fails; a probe slower than `timeout`
/// fails. Both servers go down; the good one stays up and takes the traffic.
#[tokio::test]
async fn wrong_status_and_timeouts_count_as_failures() {
    let wrong = spawn_upstream_with("wrong", |_req| async {
        text_response(StatusCode::NO_CONTENT, "wrong", "")
    })
    .await;
    let slow = spawn_upstream_with("slow", |req| async move {
        if req.uri().path() == "/healthz" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        text_response(StatusCode::OK, "slow", "slow")
    })
    .await;
    let good = spawn_upstream("good").await;
    let proxy = start_proxy(&yaml(
        &servers_yaml(&[(&wrong, 1), (&slow, 1), (&good, 1)]),
        "    health_check:\n      path: /healthz\n      interval: 50ms\n      timeout: 100ms\n      unhealthy_threshold: 2\n      expected_status: \"200\"\n",
    ))
    .await;
    let (w, s, g) = (
        state(&proxy, "wrong"),
        state(&proxy, "slow"),
        state(&proxy, "good"),
    );
    wait_for("wrong and slow down", Duration::from_secs(10), || {
        !w.is_healthy() && !s.is_healthy()
    })
    .await;
    assert!(g.is_healthy());
    let addr = proxy.local_addr("http").unwrap();
    for _ in 0..6 {
        assert_eq!(get(addr, "/x").await.server().as_deref(), Some("good"));
    }
    assert!(proxy.shutdown().await);
}

/// `type: tcp` only connects: the upstream sees connections but no request;
/// a stopped server goes down and comes back when restarted.
#[tokio::test]
async fn tcp_check_follows_the_listener() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let proxy = start_proxy(&yaml(
        &servers_yaml(&[(&a, 1), (&b, 1)]),
        "    health_check:\n      type: tcp\n      interval: 30ms\n      timeout: 500ms\n      unhealthy_threshold: 2\n      healthy_threshold: 2\n",
    ))
    .await;
    let sb = state(&proxy, "b");
    wait_for("a few probes", Duration::from_secs(10), || {
        b.connections() >= 3
    })
    .await;
    assert_eq!(b.hits(), 0, "a tcp check sends no HTTP request");
    b.stop();
    wait_for("b down", Duration::from_secs(10), || !sb.is_healthy()).await;
    let addr = proxy.local_addr("http").unwrap();
    for _ in 0..4 {
        assert_eq!(get(addr, "/").await.server().as_deref(), Some("a"));
    }
    b.restart().await;
    wait_for("b up", Duration::from_secs(10), || sb.is_healthy()).await;
    assert!(proxy.shutdown().await);
}

/// The probe scheduler in paused time: with `interval: 10s` (±10% jitter)
/// and fall 3, a server refusing connections goes down after the third
/// round, 18 to 22 s after the start (the first round runs at once); after a
/// restart, rise 2 brings it up within two more rounds.
#[tokio::test(start_paused = true)]
async fn probe_rounds_follow_the_jittered_interval_in_paused_time() {
    let up = spawn_upstream("a").await;
    up.stop();
    let proxy = start_proxy(&yaml(
        &servers_yaml(&[(&up, 1)]),
        "    health_check:\n      type: tcp\n      interval: 10s\n      timeout: 1s\n      unhealthy_threshold: 3\n      healthy_threshold: 2\n",
    ))
    .await;
    let s = state(&proxy, "a");
    let start = tokio::time::Instant::now();
    while s.is_healthy() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(start.elapsed() < Duration::from_secs(60), "never went down");
    }
    let down_after = start.elapsed();
    assert!(
        down_after >= Duration::from_secs(18) && down_after <= Duration::from_millis(22_100),
        "down after {down_after:?}"
    );
    up.restart().await;
    let restarted = tokio::time::Instant::now();
    while !s.is_healthy() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "never came up"
        );
    }
    let up_after = restarted.elapsed();
    eprintln!("paused time: down after {down_after:?}, up after {up_after:?}");
    assert!(
        up_after >= Duration::from_secs(9) && up_after <= Duration::from_millis(22_100),
        "up after {up_after:?}"
    );
    assert!(proxy.shutdown().await);
}

// === no healthy server: 503 or fail_open ===

/// Both servers answer their health check with 500 but serve requests;
/// `served` counts the requests (not probes) they answered.
async fn two_sick_servers(served: Arc<AtomicUsize>) -> (Upstream, Upstream) {
    let sick = |name: &'static str| {
        let served = served.clone();
        spawn_upstream_with(name, move |req| {
            let served = served.clone();
            async move {
                if req.uri().path() == "/healthz" {
                    text_response(StatusCode::INTERNAL_SERVER_ERROR, name, "sick")
                } else {
                    served.fetch_add(1, Ordering::SeqCst);
                    text_response(StatusCode::OK, name, name)
                }
            }
        })
    };
    (sick("a").await, sick("b").await)
}

const SICK_CHECK: &str =
    "    health_check:\n      path: /healthz\n      interval: 20ms\n      unhealthy_threshold: 1\n";

#[tokio::test]
async fn all_down_is_503_with_retry_after() {
    let served = Arc::new(AtomicUsize::new(0));
    let (a, b) = two_sick_servers(served.clone()).await;
    let proxy = start_proxy(&yaml(&servers_yaml(&[(&a, 1), (&b, 1)]), SICK_CHECK)).await;
    let (sa, sb) = (state(&proxy, "a"), state(&proxy, "b"));
    wait_for("both down", Duration::from_secs(10), || {
        !sa.is_healthy() && !sb.is_healthy()
    })
    .await;
    let reply = get(proxy.local_addr("http").unwrap(), "/x").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(
        served.load(Ordering::SeqCst),
        0,
        "no server saw the request"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn fail_open_sends_to_all_servers_when_none_is_healthy() {
    let served = Arc::new(AtomicUsize::new(0));
    let (a, b) = two_sick_servers(served.clone()).await;
    let proxy = start_proxy(&yaml(
        &servers_yaml(&[(&a, 1), (&b, 1)]),
        &format!("{SICK_CHECK}    fail_open: true\n"),
    ))
    .await;
    let (sa, sb) = (state(&proxy, "a"), state(&proxy, "b"));
    wait_for("both down", Duration::from_secs(10), || {
        !sa.is_healthy() && !sb.is_healthy()
    })
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut servers = Vec::new();
    for _ in 0..4 {
        let reply = get(addr, "/x").await;
        assert_eq!(reply.status, StatusCode::OK);
        servers.push(reply.server().unwrap());
    }
    servers.sort();
    servers.dedup();
    assert_eq!(servers, ["a", "b"], "fail_open balances over all servers");
    assert_eq!(served.load(Ordering::SeqCst), 4);
    assert!(proxy.shutdown().await);
}

// === passive ejection (paused time, no sockets) ===

fn passive_group(registry: &StateRegistry) -> ServerGroup {
    let config = support::config(&yaml(
        "      - address: 127.0.0.1:1\n        id: s0\n      - address: 127.0.0.1:2\n        id: s1\n      - address: 127.0.0.1:3\n        id: s2\n",
        "    passive:\n      consecutive_failures: 3\n      ejection: 10s\n      max_ejection: 40s\n",
    ));
    ServerGroup::new(&config.groups[0], registry)
}

fn fail(group: &ServerGroup, i: usize, kind: ErrorKind, times: usize) {
    for _ in 0..times {
        weir::upstream::health::passive::request_failed(group, i, kind);
    }
}

/// Returns how long (in whole 100 ms steps of paused time) server `i` stays
/// ejected.
async fn ejected_for(group: &ServerGroup, i: usize) -> Duration {
    let start = tokio::time::Instant::now();
    while !group.is_usable(i) {
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(start.elapsed() < Duration::from_secs(3600));
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn passive_ejection_doubles_up_to_max_ejection() {
    let registry = StateRegistry::default();
    let group = passive_group(&registry);
    // Two failures and a success: the streak starts again.
    fail(&group, 0, ErrorKind::UpstreamReset, 2);
    weir::upstream::health::passive::response(&group, 0, StatusCode::OK);
    fail(&group, 0, ErrorKind::UpstreamReset, 2);
    assert!(group.is_usable(0));
    // The third consecutive failure ejects for 10 s, then 20, 40, 40 (cap).
    let mut times = Vec::new();
    for _ in 0..4 {
        fail(&group, 0, ErrorKind::Connect, 3);
        assert!(!group.is_usable(0));
        times.push(ejected_for(&group, 0).await.as_secs());
    }
    assert_eq!(times, [10, 20, 40, 40]);
    // Quiet for longer than max_ejection: the backoff starts over.
    tokio::time::advance(Duration::from_secs(41)).await;
    fail(&group, 0, ErrorKind::Connect, 3);
    assert_eq!(ejected_for(&group, 0).await.as_secs(), 10);
    // Errors that say nothing about the server do not count.
    fail(&group, 1, ErrorKind::BadRequest, 10);
    assert!(group.is_usable(1));
}

#[tokio::test(start_paused = true)]
async fn passive_ejects_at_most_half_unless_all_refuse_connections() {
    let registry = StateRegistry::default();
    let group = passive_group(&registry);
    fail(&group, 0, ErrorKind::UpstreamReset, 3);
    assert!(!group.is_usable(0), "one of three may be ejected");
    fail(&group, 1, ErrorKind::UpstreamReset, 5);
    assert!(group.is_usable(1), "two of three would be more than half");
    // Every server refusing connections: all may go.
    fail(&group, 0, ErrorKind::Connect, 1);
    fail(&group, 1, ErrorKind::Connect, 3);
    fail(&group, 2, ErrorKind::Connect, 3);
    assert!(!group.is_usable(2));
    fail(&group, 1, ErrorKind::Connect, 1);
    assert!(!group.is_usable(1));
}

/// End to end: with `on_5xx`, a server answering 500 is ejected after
/// `consecutive_failures` responses and gets no traffic while ejected.
#[tokio::test]
async fn passive_on_5xx_ejects_a_failing_server() {
    let bad = spawn_upstream_with("bad", |_req| async {
        text_response(StatusCode::INTERNAL_SERVER_ERROR, "bad", "boom")
    })
    .await;
    let good = spawn_upstream("good").await;
    let proxy = start_proxy(&yaml(
        &servers_yaml(&[(&bad, 1), (&good, 1)]),
        "    passive:\n      consecutive_failures: 3\n      ejection: 1h\n      on_5xx: true\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    for _ in 0..20 {
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(&client, req).await;
    }
    assert_eq!(
        bad.hits(),
        3,
        "exactly consecutive_failures requests reach it"
    );
    assert_eq!(good.hits(), 17);
    assert!(proxy.shutdown().await);
}

// === retries ===

/// An upstream whose every non-probe request is read to the end, reported on
/// `arrived`, and then never answered (the test kills the server).
async fn black_hole(name: &str, arrived: Arc<tokio::sync::Notify>) -> Upstream {
    spawn_upstream_with(name, move |req| {
        let arrived = arrived.clone();
        async move {
            let _ = req.into_body().collect().await;
            arrived.notify_one();
            std::future::pending::<()>().await;
            unreachable!()
        }
    })
    .await
}

/// POST to a server that dies after reading the body: 502, never retried.
#[tokio::test]
async fn post_to_a_server_dying_mid_request_is_not_retried() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let dying = black_hole("dying", arrived.clone()).await;
    let other = spawn_upstream("other").await;
    // Weight 1000 vs 1: smooth WRR sends the first request to `dying`.
    let proxy = start_proxy(&yaml(
        &servers_yaml(&[(&dying, 1000), (&other, 1)]),
        "    retries: 3\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let req = Request::post(format!("http://{addr}/orders"))
        .body(Full::new(Bytes::from_static(b"{\"pay\": 100}")))
        .unwrap();
    let client = client();
    let pending = tokio::spawn(async move { send(&client, req).await });
    arrived.notified().await;
    dying.stop();
    let reply = pending.await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(other.hits(), 0, "a POST is never sent twice");
    assert!(proxy.shutdown().await);
}

/// The same failure for an idempotent GET and DELETE: retried on the other server.
#[tokio::test]
async fn idempotent_request_reset_before_response_is_retried() {
    for method in [http::Method::GET, http::Method::DELETE] {
        let arrived = Arc::new(tokio::sync::Notify::new());
        let dying = black_hole("dying", arrived.clone()).await;
        let other = spawn_upstream("other").await;
        let proxy = start_proxy(&yaml(&servers_yaml(&[(&dying, 1000), (&other, 1)]), "")).await;
        let addr = proxy.local_addr("http").unwrap();
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}/item/1"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let client = client();
        let pending = tokio::spawn(async move { send(&client, req).await });
        arrived.notified().await;
        dying.stop();
        let reply = pending.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{method}");
        assert_eq!(reply.server().as_deref(), Some("other"), "{method}");
        assert_eq!(dying.hits(), 1);
        assert_eq!(other.hits(), 1);
        assert!(proxy.shutdown().await);
    }
}

// === headline: a server dies and returns under load ===

/// 24 concurrent clients send 4 000+ GETs through weir to three servers.
/// One server is killed (listener and open connections) after 800 requests
/// and restarted once it is marked down and 800 more requests were served.
/// No request may fail, and the restarted server must get client traffic
/// again within `interval × healthy_threshold` plus a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dies_and_returns_under_load_with_zero_failed_requests() {
    const CLIENTS: usize = 24;
    const TOTAL: usize = 4000;
    const INTERVAL: Duration = Duration::from_millis(200);
    const RISE: u32 = 2;
    let traffic = |name: &'static str| {
        let counter = Arc::new(AtomicUsize::new(0));
        let c = counter.clone();
        let up = spawn_upstream_with(name, move |req| {
            if req.uri().path() != "/healthz" {
                c.fetch_add(1, Ordering::SeqCst);
            }
            async move { text_response(StatusCode::OK, name, name) }
        });
        (up, counter)
    };
    let (a, _) = traffic("a");
    let (b, b_traffic) = traffic("b");
    let (c, _) = traffic("c");
    let (a, b, c) = (a.await, b.await, c.await);
    let proxy = start_proxy(&yaml(
        &servers_yaml(&[(&a, 1), (&b, 1), (&c, 1)]),
        &format!(
            "    health_check:\n      path: /healthz\n      interval: {}ms\n      timeout: 500ms\n      healthy_threshold: {RISE}\n      unhealthy_threshold: 2\n    retries: 1\n",
            INTERVAL.as_millis()
        ),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let sb = state(&proxy, "b");

    let done = Arc::new(AtomicUsize::new(0));
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let req = Request::get(format!("http://{addr}/repositories/1"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let outcome = match tokio::time::timeout(
                    Duration::from_secs(10),
                    client.request(req),
                )
                .await
                {
                    Ok(Ok(resp)) if resp.status() == StatusCode::OK => {
                        match resp.into_body().collect().await {
                            Ok(_) => None,
                            Err(e) => Some(format!("body: {e}")),
                        }
                    }
                    Ok(Ok(resp)) => Some(format!("status {}", resp.status())),
                    Ok(Err(e)) => Some(format!("error {e}")),
                    Err(_) => Some("timeout".to_string()),
                };
                if let Some(f) = outcome {
                    failed.lock().unwrap().push(f);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let count = || done.load(Ordering::SeqCst);
    wait_for("800 requests", Duration::from_secs(30), || count() >= 800).await;
    b.stop();
    let killed_at = count();
    wait_for("b marked down", Duration::from_secs(10), || {
        !sb.is_healthy()
    })
    .await;
    wait_for("800 more requests", Duration::from_secs(30), || {
        count() >= killed_at + 800
    })
    .await;
    let before_restart = b_traffic.load(Ordering::SeqCst);
    b.restart().await;
    let restarted = Instant::now();
    wait_for("b gets traffic again", Duration::from_secs(10), || {
        b_traffic.load(Ordering::SeqCst) > before_restart
    })
    .await;
    let back_after = restarted.elapsed();
    wait_for("4000 requests", Duration::from_secs(30), || {
        count() >= TOTAL
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    let total = count();
    eprintln!(
        "headline: {total} requests, {} failed; b killed after {killed_at}; traffic back {back_after:?} after restart; hits a={} b={} c={}",
        failed.len(),
        a.hits(),
        b.hits(),
        c.hits()
    );
    assert!(
        failed.is_empty(),
        "failed requests: {:?}",
        &failed[..failed.len().min(10)]
    );
    // interval × healthy_threshold, +10% jitter per round, + one round in
    // flight when the server came back, + a generous margin for a loaded CI.
    let bound = INTERVAL * (RISE + 1) * 11 / 10 + Duration::from_secs(2);
    assert!(
        back_after <= bound,
        "traffic returned after {back_after:?} > {bound:?}"
    );
    assert!(proxy.shutdown().await);
}

// === config ===

#[test]
fn health_config_errors_name_line_and_key() {
    let bad = yaml(
        "      - address: 127.0.0.1:1\n",
        "    health_check:\n      type: tcp\n      path: /healthz\n      interval: 0s\n      expected_status: \"300-200\"\n    passive:\n      ejection: 1m\n      max_ejection: 10s\n",
    );
    let err = weir::config::load_str(&bad, std::path::Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    for needle in [
        "t.yaml:10:13: groups.g.health_check.path: only for type http",
        "t.yaml:11:17: groups.g.health_check.interval: must be greater than 0",
        "groups.g.health_check.expected_status: only for type http",
        "t.yaml:15:21: groups.g.passive.max_ejection: must not be shorter than ejection",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let bad_status = yaml(
        "      - address: 127.0.0.1:1\n",
        "    health_check:\n      expected_status: [\"200-299\", 700]\n      method: POST\n",
    );
    let err = weir::config::load_str(&bad_status, std::path::Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected_status: \"700\" is not an HTTP status"),
        "{err}"
    );
    assert!(err.contains("method: \"POST\" is not supported"), "{err}");
    let ok = yaml(
        "      - address: 127.0.0.1:1\n",
        "    health_check:\n      expected_status: [200, \"300-399\"]\n      method: head\n      host: api.internal\n",
    );
    let config = weir::config::load_str(&ok, std::path::Path::new("t.yaml")).unwrap();
    let check = config.groups[0].health_check.as_ref().unwrap();
    assert_eq!(check.interval, Duration::from_secs(5));
    assert_eq!((check.healthy_threshold, check.unhealthy_threshold), (2, 3));
    match &check.kind {
        weir::health::ProbeKind::Http(h) => {
            assert_eq!(h.expected.0, [(200, 200), (300, 399)]);
            assert_eq!(h.method, http::Method::HEAD);
            assert_eq!(h.path, "/");
        }
        other => panic!("expected an http probe, got {other:?}"),
    }
}
