//! `servers[].backup` and `servers[].slow_start` end to end: a backup gets
//! nothing while the primary is up and takes over when it dies (active
//! health checks mark it down); a server that recovers gets a small share
//! at first with slow start.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::*;

/// An upstream named `name` that counts requests other than health probes.
async fn counted(name: &str) -> (Upstream, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let (c, id) = (n.clone(), name.to_string());
    let up = spawn_upstream_with(name, move |req| {
        if req.uri().path() != "/healthz" {
            c.fetch_add(1, Ordering::SeqCst);
        }
        let id = id.clone();
        async move { text_response(StatusCode::OK, &id, &id) }
    })
    .await;
    (up, n)
}

fn hc() -> &'static str {
    "    health_check:\n      path: /healthz\n      interval: 100ms\n      timeout: 100ms\n      healthy_threshold: 1\n      unhealthy_threshold: 1\n"
}

async fn wait_health(admin: std::net::SocketAddr, id: &str, healthy: bool) {
    within(10, "health flip", async {
        loop {
            let v: serde_json::Value =
                serde_json::from_str(&get(admin, "/status").await.text()).unwrap();
            let servers = v["groups"][0]["servers"].as_array().unwrap().clone();
            if servers
                .iter()
                .any(|s| s["id"] == id && s["healthy"] == healthy)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_backup_takes_over_only_when_the_primary_dies() {
    let (primary, _) = counted("primary").await;
    let (backup, backup_hits) = counted("backup").await;
    // The backup is listed first: order in the file does not matter.
    let yaml = format!(
        "admin:\n  address: 127.0.0.1:0\nlisteners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n{}    servers:\n      - address: {}\n        id: backup\n        backup: true\n      - address: {}\n        id: primary\n",
        hc(),
        backup.addr,
        primary.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addrs()[0].1;
    let admin = proxy.admin_addr().unwrap();
    let client = client();
    for _ in 0..20 {
        let r = get_with(&client, addr).await;
        assert_eq!(r.server().as_deref(), Some("primary"));
    }
    assert_eq!(
        backup_hits.load(Ordering::SeqCst),
        0,
        "the backup got traffic while the primary was up"
    );
    primary.stop();
    wait_health(admin, "primary", false).await;
    for _ in 0..20 {
        let r = get_with(&client, addr).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.server().as_deref(), Some("backup"));
    }
    primary.restart().await;
    wait_health(admin, "primary", true).await;
    let before = backup_hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        let r = get_with(&client, addr).await;
        assert_eq!(r.server().as_deref(), Some("primary"));
    }
    assert_eq!(backup_hits.load(Ordering::SeqCst), before);
    let v: serde_json::Value = serde_json::from_str(&get(admin, "/status").await.text()).unwrap();
    let b = v["groups"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "backup")
        .unwrap()
        .clone();
    assert_eq!(b["backup"], true);
    proxy.shutdown().await;
}

async fn get_with(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    addr: std::net::SocketAddr,
) -> Reply {
    let req = http::Request::get(format!("http://{addr}/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    send(client, req).await
}

#[tokio::test]
async fn a_recovered_server_gets_a_small_share_at_first() {
    let (a, a_hits) = counted("a").await;
    let (b, b_hits) = counted("b").await;
    let yaml = format!(
        "admin:\n  address: 127.0.0.1:0\nlisteners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n{}    servers:\n      - address: {}\n        id: a\n      - address: {}\n        id: b\n        slow_start: 60s\n",
        hc(),
        a.addr,
        b.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addrs()[0].1;
    let admin = proxy.admin_addr().unwrap();
    let client = client();
    // At start: no ramp (HAProxy does not ramp at process start): 50/50.
    for _ in 0..40 {
        get_with(&client, addr).await;
    }
    let b_start = b_hits.load(Ordering::SeqCst);
    assert!(
        (15..=25).contains(&b_start),
        "b got {b_start} of 40 at start"
    );
    b.stop();
    wait_health(admin, "b", false).await;
    b.restart().await;
    wait_health(admin, "b", true).await;
    let (a0, b0) = (a_hits.load(Ordering::SeqCst), b_hits.load(Ordering::SeqCst));
    for _ in 0..200 {
        assert_eq!(get_with(&client, addr).await.status, 200);
    }
    let (da, db) = (
        a_hits.load(Ordering::SeqCst) - a0,
        b_hits.load(Ordering::SeqCst) - b0,
    );
    // Within the first seconds of a 60 s ramp the factor is ~1-5%: b gets
    // a few requests where it would get 100 without slow start.
    assert!(
        db < 30,
        "b got {db} of 200 right after recovery (a got {da})"
    );
    let v: serde_json::Value = serde_json::from_str(&get(admin, "/status").await.text()).unwrap();
    let f = v["groups"][0]["servers"][1]["slow_start_factor"]
        .as_f64()
        .unwrap();
    assert!(f < 0.5, "factor {f}");
    proxy.shutdown().await;
}
