//! Balancing algorithms through the real proxy: real upstreams on port 0,
//! real clients (distinct client addresses from 127.0.0.0/8 where the
//! algorithm hashes them).

use crate::support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

/// The tests of this file measure shares under timing; they take turns so
/// that the heavy ones (thousands of connections) do not skew the others.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Requests per weight test.
const REQUESTS: usize = 8000;
/// Parallel clients of a weight test.
const WORKERS: usize = 8;

fn yaml(group_extra: &str, servers: &str) -> String {
    ConfigYaml::new().group("g", group_extra, servers).build()
}

/// GET `path` from client address `src` (any 127.0.0.0/8 address: Linux
/// routes the whole block to lo), on a new connection; returns the
/// `x-server` of the answer.
async fn get_from(src: IpAddr, proxy: SocketAddr, path: &str) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(src, 0)).unwrap();
    let stream = socket.connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("answer within 10s")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let server = resp.headers()["x-server"].to_str().unwrap().to_string();
    let _ = resp.into_body().collect().await;
    server
}

/// The `i`-th distinct client address: 127.1.x.y.
fn client_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// Sends `REQUESTS` requests over `workers` keep-alive clients; request `i`
/// carries header `x-user: user-i`. Returns (heavy hits, light hits).
async fn split(
    group_extra: &str,
    heavy: &Upstream,
    light: &Upstream,
    workers: usize,
) -> (usize, usize) {
    let proxy = start_proxy(&yaml(group_extra, &servers_yaml(&[(heavy, 3), (light, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut set = JoinSet::new();
    for w in 0..workers {
        set.spawn(async move {
            let c = client();
            for i in (w..REQUESTS).step_by(workers) {
                let req = Request::get(format!("http://{addr}/"))
                    .header("x-user", format!("user-{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(send(&c, req).await.status, 200);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    proxy.shutdown().await;
    (heavy.hits(), light.hits())
}

/// Asserts a 3:1 split: the heavy server's share within 3 percentage points of 75%.
fn assert_three_to_one(name: &str, (heavy, light): (usize, usize)) {
    assert_eq!(heavy + light, REQUESTS, "{name}");
    let share = heavy as f64 / REQUESTS as f64;
    println!("{name}: heavy {heavy}, light {light}, share {share:.4}");
    assert!(
        (share - 0.75).abs() <= 0.03,
        "{name}: heavy share {share:.4} (heavy {heavy}, light {light})"
    );
}

async fn weight_test(algorithm: &str, extra: &str, workers: usize) {
    let (h, l) = (spawn_upstream("heavy").await, spawn_upstream("light").await);
    let got = split(
        &format!("    algorithm: {algorithm}\n{extra}"),
        &h,
        &l,
        workers,
    )
    .await;
    assert_three_to_one(algorithm, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_round_robin() {
    let _serial = SERIAL.lock().await;
    weight_test("round_robin", "", WORKERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Sequential traffic: every server idle at each pick, so ties are broken by
/// the weighted rotation. (Under concurrency `in_flight / weight` decides;
/// see `least_connections_avoids_a_slow_server`.)
async fn weights_least_connections() {
    let _serial = SERIAL.lock().await;
    weight_test("least_connections", "", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Sequential traffic: idle servers tie and the first (weighted) draw wins.
async fn weights_power_of_two_choices() {
    let _serial = SERIAL.lock().await;
    weight_test("power_of_two_choices", "", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_random() {
    let _serial = SERIAL.lock().await;
    weight_test("random", "", WORKERS).await;
}

/// `hash` over 8,000 distinct `x-user` values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_hash_over_distinct_keys() {
    let _serial = SERIAL.lock().await;
    weight_test("hash", "    hash_key: header:x-user\n", WORKERS).await;
}

/// `least_response_time` with two equally fast servers under concurrency:
/// the score `ewma × (in_flight + 1) / weight` balances in-flight requests
/// 3:1, so do the shares (Little's law). A short `ewma_decay` keeps a single
/// scheduling hiccup from skewing the estimates for the rest of the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_least_response_time() {
    let _serial = SERIAL.lock().await;
    let slow = |name: &'static str| {
        spawn_upstream_with(name, move |_req| async move {
            tokio::time::sleep(Duration::from_millis(4)).await;
            text_response(StatusCode::OK, name, name)
        })
    };
    let (h, l) = (slow("heavy").await, slow("light").await);
    let proxy = start_proxy(&yaml(
        "    algorithm: least_response_time\n    ewma_decay: 200ms\n",
        &servers_yaml(&[(&h, 3), (&l, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut set = JoinSet::new();
    const CONCURRENCY: usize = 40;
    for w in 0..CONCURRENCY {
        set.spawn(async move {
            let c = client();
            for _ in (w..REQUESTS).step_by(CONCURRENCY) {
                let req = Request::get(format!("http://{addr}/"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(send(&c, req).await.status, 200);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    proxy.shutdown().await;
    assert_three_to_one("least_response_time", (h.hits(), l.hits()));
}

/// `ip_hash` over 8,000 distinct client addresses (127.1.x.y).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_ip_hash_over_distinct_clients() {
    let _serial = SERIAL.lock().await;
    let (h, l) = (spawn_upstream("heavy").await, spawn_upstream("light").await);
    let proxy = start_proxy(&yaml(
        "    algorithm: ip_hash\n",
        &servers_yaml(&[(&h, 3), (&l, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut set = JoinSet::new();
    for w in 0..WORKERS {
        set.spawn(async move {
            for i in (w..REQUESTS).step_by(WORKERS) {
                get_from(client_ip(i), addr, "/").await;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    proxy.shutdown().await;
    assert_three_to_one("ip_hash", (h.hits(), l.hits()));
}

/// Maps `clients` distinct client addresses to the server id that answers
/// them, through a proxy on `servers` with `ip_hash`.
async fn ip_hash_map(servers: &[&Upstream], clients: usize) -> Vec<String> {
    let list: Vec<(&Upstream, u32)> = servers.iter().map(|u| (*u, 1)).collect();
    let proxy = start_proxy(&yaml("    algorithm: ip_hash\n", &servers_yaml(&list))).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut set = JoinSet::new();
    for w in 0..WORKERS {
        set.spawn(async move {
            let mut out = Vec::new();
            for i in (w..clients).step_by(WORKERS) {
                out.push((i, get_from(client_ip(i), addr, "/").await));
            }
            out
        });
    }
    let mut map = vec![String::new(); clients];
    while let Some(r) = set.join_next().await {
        for (i, s) in r.unwrap() {
            map[i] = s;
        }
    }
    proxy.shutdown().await;
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_same_client_same_server() {
    let _serial = SERIAL.lock().await;
    let ups: Vec<Upstream> = futures_join(5).await;
    let refs: Vec<&Upstream> = ups.iter().collect();
    let list: Vec<(&Upstream, u32)> = refs.iter().map(|u| (*u, 1)).collect();
    let proxy = start_proxy(&yaml("    algorithm: ip_hash\n", &servers_yaml(&list))).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut used = HashMap::new();
    for c in 0..50 {
        let ip = client_ip(c);
        let first = get_from(ip, addr, "/").await;
        for k in 0..5 {
            let again = get_from(ip, addr, &format!("/other/{k}")).await;
            assert_eq!(first, again, "client {ip} moved");
        }
        *used.entry(first).or_insert(0) += 1;
    }
    // 50 clients spread over the servers (each gets some).
    assert_eq!(used.len(), 5, "{used:?}");
    proxy.shutdown().await;
}

async fn futures_join(n: usize) -> Vec<Upstream> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(spawn_upstream(&format!("s{}", i + 1)).await);
    }
    v
}

/// Removing one of 5 servers moves only its clients; adding a 6th moves at
/// most 1/6 + 5% of the clients (the keys now on the new server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_membership_changes_move_few_clients() {
    let _serial = SERIAL.lock().await;
    const CLIENTS: usize = 1500;
    let ups = futures_join(6).await;
    let five: Vec<&Upstream> = ups[..5].iter().collect();
    let before = ip_hash_map(&five, CLIENTS).await;

    let removed = "s3";
    let four: Vec<&Upstream> = ups[..5].iter().filter(|u| u.name != removed).collect();
    let after_remove = ip_hash_map(&four, CLIENTS).await;
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after_remove) {
        if b != removed {
            assert_eq!(b, a, "a client not on {removed} moved");
        } else {
            moved += 1;
            assert_ne!(a, removed);
        }
    }
    assert!(moved > 0);

    let six: Vec<&Upstream> = ups.iter().collect();
    let after_add = ip_hash_map(&six, CLIENTS).await;
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after_add) {
        if b != a {
            // Only to the new server.
            assert_eq!(a, "s6");
            moved += 1;
        }
    }
    let fraction = moved as f64 / CLIENTS as f64;
    println!("adding a 6th server moved {moved} of {CLIENTS} clients ({fraction:.4})");
    assert!(fraction <= 1.0 / 6.0 + 0.05, "moved {fraction:.4}");
    assert!(
        fraction > 0.05,
        "the new server got almost nothing: {fraction:.4}"
    );
}

/// One upstream answers after 200 ms, two at once; under 30 concurrent
/// clients the slow one gets under a third of its round-robin share (1/3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_a_slow_server() {
    let _serial = SERIAL.lock().await;
    let slow = spawn_upstream_with("slow", |_req| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        text_response(StatusCode::OK, "slow", "slow")
    })
    .await;
    let (f1, f2) = (spawn_upstream("fast1").await, spawn_upstream("fast2").await);
    let proxy = start_proxy(&yaml(
        "    algorithm: least_connections\n",
        &servers_yaml(&[(&slow, 1), (&f1, 1), (&f2, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    const CLIENTS: usize = 30;
    const EACH: usize = 30;
    let mut set = JoinSet::new();
    for _ in 0..CLIENTS {
        set.spawn(async move {
            let c = client();
            for _ in 0..EACH {
                let req = Request::get(format!("http://{addr}/"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(send(&c, req).await.status, 200);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    proxy.shutdown().await;
    let total = slow.hits() + f1.hits() + f2.hits();
    assert_eq!(total, CLIENTS * EACH);
    let share = slow.hits() as f64 / total as f64;
    println!(
        "least_connections: slow {} of {total} ({share:.4}); round robin would give 0.3333",
        slow.hits()
    );
    assert!(share < 1.0 / 9.0, "slow share {share:.4}");
}

/// Upstreams of 5 ms and 50 ms under 16 concurrent clients: the fast one
/// gets at least 80% of the requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_response_time_prefers_the_fast_server() {
    let _serial = SERIAL.lock().await;
    let with_delay = |name: &'static str, ms: u64| {
        spawn_upstream_with(name, move |_req| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text_response(StatusCode::OK, name, name)
        })
    };
    let fast = with_delay("fast", 5).await;
    let slow = with_delay("slow", 50).await;
    let proxy = start_proxy(&yaml(
        "    algorithm: least_response_time\n",
        &servers_yaml(&[(&fast, 1), (&slow, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    const CLIENTS: usize = 16;
    const EACH: usize = 40;
    let mut set = JoinSet::new();
    for _ in 0..CLIENTS {
        set.spawn(async move {
            let c = client();
            for _ in 0..EACH {
                let req = Request::get(format!("http://{addr}/"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(send(&c, req).await.status, 200);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let snapshot = proxy.snapshot();
    let group = &snapshot.groups[0];
    let ewmas: Vec<(String, Option<Duration>)> = group
        .server_loads()
        .map(|(s, _, ewma)| (s.id.to_string(), ewma))
        .collect();
    proxy.shutdown().await;
    let total = fast.hits() + slow.hits();
    let share = fast.hits() as f64 / total as f64;
    println!(
        "least_response_time: fast {} of {total} ({share:.4}); EWMAs {ewmas:?}",
        fast.hits()
    );
    assert!(share >= 0.8, "fast share {share:.4}");
    // The EWMA is exported per server and reflects the latencies.
    let get = |id: &str| ewmas.iter().find(|(i, _)| i == id).unwrap().1.unwrap();
    assert!(get("slow") >= Duration::from_millis(40), "{ewmas:?}");
    assert!(get("fast") < get("slow"), "{ewmas:?}");
}

/// A server with many in-flight requests gets no new ones while the others
/// are idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_of_two_choices_avoids_a_loaded_server() {
    let _serial = SERIAL.lock().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let busy = spawn_upstream_with("busy", move |_req| {
        let g = g.clone();
        async move {
            // Held until the test releases it (bounded by 5 s).
            let _ = tokio::time::timeout(Duration::from_secs(5), g.notified()).await;
            text_response(StatusCode::OK, "busy", "busy")
        }
    })
    .await;
    let others = futures_join(3).await;
    let mut list = vec![(&busy, 1)];
    list.extend(others.iter().map(|u| (u, 1)));
    let proxy = start_proxy(&yaml(
        "    algorithm: power_of_two_choices\n",
        &servers_yaml(&list),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();

    // Load: bursts of concurrent requests until the busy server holds at
    // least 4 (while all are busy at once, it wins some comparisons).
    let mut held = JoinSet::new();
    for _ in 0..20 {
        if busy.hits() >= 4 {
            break;
        }
        for _ in 0..16 {
            held.spawn(async move { get(addr, "/load").await });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(busy.hits() >= 4, "could not load the busy server");
    let state = proxy.registry().state(&Arc::from("g"), &Arc::from("busy"));
    assert!(state.in_flight() >= 4);
    // Let the quick ones finish.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = busy.hits();
    let c = client();
    for _ in 0..400 {
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&c, req).await.status, 200);
    }
    let to_busy = busy.hits() - before;
    println!("power_of_two_choices: busy server got {to_busy} of 400 while loaded");
    assert!(to_busy <= 4, "busy server got {to_busy} of 400");

    gate.notify_waiters();
    while let Some(r) = held.join_next().await {
        assert_eq!(r.unwrap().status, 200);
    }
    proxy.shutdown().await;
}

/// `hash` without its key in the request falls back to round robin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_without_key_falls_back_to_round_robin() {
    let _serial = SERIAL.lock().await;
    let (a, b) = (spawn_upstream("a").await, spawn_upstream("b").await);
    let proxy = start_proxy(&yaml(
        "    algorithm: hash\n    hash_key: cookie:sid\n",
        &servers_yaml(&[(&a, 1), (&b, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let c = client();
    // With the key: always the same server.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let req = Request::get(format!("http://{addr}/"))
            .header("cookie", "theme=dark; sid=abc123")
            .body(Full::new(Bytes::new()))
            .unwrap();
        seen.push(send(&c, req).await.server().unwrap());
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    // Without it: alternating.
    let (a0, b0) = (a.hits(), b.hits());
    for _ in 0..20 {
        get(addr, "/").await;
    }
    assert_eq!((a.hits() - a0, b.hits() - b0), (10, 10));
    proxy.shutdown().await;
}

/// The shipped example config selects `least_response_time` on `profile`.
#[test]
fn routes_example_uses_least_response_time() {
    // The example reads the sticky-cookie secret from WEIR_AFFINITY_SECRET.
    let text = std::fs::read_to_string(path("routes.example.yaml"))
        .unwrap()
        .replace(
            "secret_env: WEIR_AFFINITY_SECRET",
            "secret: test-only-secret-0123456789",
        );
    let config =
        weir::config::load_str(&text, &path("routes.example.yaml")).expect("example loads");
    let profile = config
        .groups
        .iter()
        .find(|g| &*g.name == "profile")
        .unwrap();
    assert_eq!(
        profile.algorithm,
        weir::config::Algorithm::LeastResponseTime
    );
    assert_eq!(profile.default_rtt, Duration::from_millis(30));
}

/// A stopped server's clients move (the failed connect is retried on the
/// next server clockwise); every other client keeps its server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_down_server_moves_only_its_clients() {
    let _serial = SERIAL.lock().await;
    const CLIENTS: usize = 300;
    let ups = futures_join(5).await;
    let list: Vec<(&Upstream, u32)> = ups.iter().map(|u| (u, 1)).collect();
    let proxy = start_proxy(&yaml("    algorithm: ip_hash\n", &servers_yaml(&list))).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut before = Vec::new();
    for i in 0..CLIENTS {
        before.push(get_from(client_ip(i), addr, "/").await);
    }
    ups[2].stop();
    let mut moved = 0;
    for (i, b) in before.iter().enumerate() {
        let now = get_from(client_ip(i), addr, "/").await;
        if b == "s3" {
            assert_ne!(now, "s3");
            moved += 1;
        } else {
            assert_eq!(&now, b, "client {i} moved although its server is up");
        }
    }
    assert!(moved > 0);
    proxy.shutdown().await;
}
