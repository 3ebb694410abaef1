//! Smooth weighted round robin through the whole proxy: nginx's exact sequence
//! for weights 5,1,1 and the share of 3:1 weights over 4,000 requests.

use crate::support;

use std::sync::Arc;

use support::*;

fn yaml(servers: &str) -> String {
    ConfigYaml::new()
        .group("g", "    algorithm: round_robin\n", servers)
        .build()
}

#[tokio::test]
async fn weights_5_1_1_give_the_nginx_sequence() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let c = spawn_upstream("c").await;
    let proxy = start_proxy(&yaml(&servers_yaml(&[(&a, 5), (&b, 1), (&c, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    let mut seq = Vec::new();
    within(30, "21 sequential requests", async {
        for i in 0..21 {
            let req = http::Request::get(format!("http://{addr}/r/{i}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let r = send(&client, req).await;
            assert_eq!(r.status, 200);
            seq.push(r.server().unwrap());
        }
    })
    .await;
    let cycle = ["a", "a", "b", "a", "c", "a", "a"];
    let want: Vec<&str> = cycle.iter().cycle().take(21).copied().collect();
    assert_eq!(seq, want, "not nginx's smooth weighted sequence");
    assert_eq!((a.hits(), b.hits(), c.hits()), (15, 3, 3));
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn weights_3_1_split_within_3_percent_over_4000_requests() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let proxy = start_proxy(&yaml(&servers_yaml(&[(&a, 3), (&b, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();
    const TOTAL: usize = 4000;
    const CLIENTS: usize = 4;
    let counts = Arc::new(std::sync::Mutex::new((0usize, 0usize)));
    within(120, "4000 requests", async {
        let mut set = tokio::task::JoinSet::new();
        for c in 0..CLIENTS {
            let counts = counts.clone();
            set.spawn(async move {
                let client = client();
                for i in 0..TOTAL / CLIENTS {
                    let req = http::Request::get(format!("http://{addr}/c{c}/{i}"))
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    let r = send(&client, req).await;
                    assert_eq!(r.status, 200);
                    let mut n = counts.lock().unwrap();
                    match r.server().as_deref() {
                        Some("a") => n.0 += 1,
                        Some("b") => n.1 += 1,
                        other => panic!("unexpected server {other:?}"),
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let (na, nb) = *counts.lock().unwrap();
    assert_eq!(na + nb, TOTAL);
    assert_eq!(
        (a.hits(), b.hits()),
        (na, nb),
        "x-server and upstream counts disagree"
    );
    let share_a = na as f64 / TOTAL as f64;
    assert!(
        (share_a - 0.75).abs() <= 0.03,
        "a got {na} of {TOTAL} ({:.1}%), want 75% ± 3",
        share_a * 100.0
    );
    assert!(proxy.shutdown().await);
}
