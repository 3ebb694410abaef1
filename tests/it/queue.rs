//! `servers[].max_connections` and `groups.*.queue`: a server never sees
//! more requests at once than its limit (with two workers), the others wait
//! in the group's FIFO queue and all succeed; a full queue answers 503 at
//! once, a wait past `queue.timeout` answers 503; the queue shows in
//! `/status` and `/metrics`.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::*;
use tokio::sync::Semaphore;

/// An upstream that counts concurrent requests (and the most seen) and
/// holds each one until `gate` gives a permit (or for `hold` when no gate).
async fn counting_upstream(
    name: &str,
    hold: Duration,
    gate: Option<Arc<Semaphore>>,
) -> (Upstream, Arc<AtomicUsize>) {
    let current = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (c, m) = (current.clone(), max.clone());
    let n = name.to_string();
    let up = spawn_upstream_with(name, move |_req| {
        let (c, m, n, gate) = (c.clone(), m.clone(), n.clone(), gate.clone());
        async move {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            match gate {
                Some(g) => g.acquire().await.unwrap().forget(),
                None => tokio::time::sleep(hold).await,
            }
            c.fetch_sub(1, Ordering::SeqCst);
            text_response(StatusCode::OK, &n, &n)
        }
    })
    .await;
    (up, max)
}

fn yaml(up: &Upstream, queue: &str, workers: usize) -> String {
    ConfigYaml::new()
        .top(&format!("workers: {workers}\n"))
        .listener_name(None)
        .admin("")
        .group(
            "g",
            &format!("    retries: 0\n{queue}"),
            &format!(
                "{}        max_connections: 1\n",
                server_id(up.addr, &up.name)
            ),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_one_serializes_six_concurrent_clients_through_the_queue() {
    let (up, max) = counting_upstream("one", Duration::from_millis(80), None).await;
    let proxy = start_proxy(&yaml(&up, "    queue: { max: 10, timeout: 5s }\n", 2)).await;
    let addr = proxy.local_addrs()[0].1;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        // A client (and connection) each: the two workers both take some.
        tasks.push(tokio::spawn(async move { get(addr, "/").await.status }));
    }
    for t in tasks {
        assert_eq!(
            within(20, "queued request", t).await.unwrap(),
            StatusCode::OK
        );
    }
    assert_eq!(up.hits(), 6);
    assert_eq!(
        max.load(Ordering::SeqCst),
        1,
        "the server saw 2 requests at once"
    );
    let status = get(proxy.admin_addr().unwrap(), "/status").await.text();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let q = &v["groups"][0]["queue"];
    assert!(q["queued"].as_u64().unwrap() >= 4, "{q}");
    assert_eq!(q["length"], 0, "{q}");
    assert!(q["wait_ms_max"].as_f64().unwrap() > 0.0, "{q}");
    assert_eq!(v["groups"][0]["servers"][0]["max_connections"], 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_answers_503_at_once_and_shows_in_metrics() {
    let gate = Arc::new(Semaphore::new(0));
    let (up, max) = counting_upstream("gated", Duration::ZERO, Some(gate.clone())).await;
    let proxy = start_proxy(&yaml(&up, "    queue: { max: 1, timeout: 10s }\n", 1)).await;
    let addr = proxy.local_addrs()[0].1;
    let admin = proxy.admin_addr().unwrap();
    let first = tokio::spawn(async move { get(addr, "/").await.status });
    within(10, "first request reaches the server", async {
        while up.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let second = tokio::spawn(async move { get(addr, "/").await.status });
    within(10, "second request queued", async {
        loop {
            let m = get(admin, "/metrics").await.text();
            if m.lines()
                .any(|l| l == "weir_group_queue_length{group=\"g\"} 1")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Queue holds max (1): the third gets 503 without waiting.
    let third = within(5, "third request", get(addr, "/")).await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers["retry-after"], "1");
    let status: serde_json::Value =
        serde_json::from_str(&get(admin, "/status").await.text()).unwrap();
    assert_eq!(status["groups"][0]["queue"]["length"], 1);
    gate.add_permits(2);
    assert_eq!(within(10, "first", first).await.unwrap(), StatusCode::OK);
    assert_eq!(within(10, "second", second).await.unwrap(), StatusCode::OK);
    assert_eq!(max.load(Ordering::SeqCst), 1);
    let m = get(admin, "/metrics").await.text();
    assert!(
        m.contains("weir_group_queue_rejected_total{group=\"g\",reason=\"full\"} 1"),
        "{m}"
    );
    assert!(m.contains("weir_group_queue_length{group=\"g\"} 0"), "{m}");
    assert!(
        m.contains("weir_group_queue_wait_seconds_total{group=\"g\"}"),
        "{m}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn waiting_past_the_queue_timeout_answers_503() {
    let gate = Arc::new(Semaphore::new(0));
    let (up, _) = counting_upstream("slow", Duration::ZERO, Some(gate.clone())).await;
    let proxy = start_proxy(&yaml(&up, "    queue: { max: 10, timeout: 200ms }\n", 1)).await;
    let addr = proxy.local_addrs()[0].1;
    let first = tokio::spawn(async move { get(addr, "/").await.status });
    within(10, "first request reaches the server", async {
        while up.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let second = within(10, "queued request times out", get(addr, "/")).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        up.hits(),
        1,
        "the timed-out request must not reach the server"
    );
    gate.add_permits(1);
    assert_eq!(within(10, "first", first).await.unwrap(), StatusCode::OK);
    let m = get(proxy.admin_addr().unwrap(), "/metrics").await.text();
    assert!(
        m.contains("weir_group_queue_rejected_total{group=\"g\",reason=\"timeout\"} 1"),
        "{m}"
    );
    // The slot is free again: a new request goes straight through.
    gate.add_permits(1);
    assert_eq!(get(addr, "/").await.status, StatusCode::OK);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_that_leaves_the_queue_hands_its_turn_on() {
    let gate = Arc::new(Semaphore::new(0));
    let (up, max) = counting_upstream("handoff", Duration::ZERO, Some(gate.clone())).await;
    let proxy = start_proxy(&yaml(&up, "    queue: { max: 10, timeout: 10s }\n", 1)).await;
    let addr = proxy.local_addrs()[0].1;
    let first = tokio::spawn(async move { get(addr, "/").await.status });
    within(10, "first request reaches the server", async {
        while up.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // A queued client that gives up (its connection closes).
    let quitter = tokio::spawn(async move { get(addr, "/").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    quitter.abort();
    let third = tokio::spawn(async move { get(addr, "/").await.status });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.add_permits(2);
    assert_eq!(within(10, "first", first).await.unwrap(), StatusCode::OK);
    assert_eq!(within(10, "third", third).await.unwrap(), StatusCode::OK);
    assert_eq!(max.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

/// Churn on two slots from two workers: every request succeeds (a slot
/// freed between a lost compare-and-swap and the full/no-server decision once
/// made this answer 503 about one run in three) and the server never sees
/// more than two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_clients_on_two_slots_with_two_workers_all_succeed() {
    let (up, max) = counting_upstream("two", Duration::ZERO, None).await;
    let yaml = yaml(&up, "    queue: { max: 100, timeout: 10s }\n", 2)
        .replace("max_connections: 1", "max_connections: 2");
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addrs()[0].1;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut statuses = Vec::new();
            for _ in 0..10 {
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                statuses.push(send(&client, req).await.status);
            }
            statuses
        }));
    }
    for t in tasks {
        let statuses = within(60, "client", t).await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
    assert_eq!(up.hits(), 400);
    assert!(
        max.load(Ordering::SeqCst) <= 2,
        "{} at once",
        max.load(Ordering::SeqCst)
    );
    proxy.shutdown().await;
}
