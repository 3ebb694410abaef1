//! Pooled upstream connections: sequential requests reuse one keep-alive
//! connection instead of opening one each.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

fn yaml(servers: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n    servers:\n{servers}"
    )
}

#[tokio::test]
async fn hundred_sequential_requests_reuse_upstream_connections() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&servers_yaml(&[(&up, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    within(60, "100 requests", async {
        for i in 0..100 {
            let req = Request::get(format!("http://{addr}/p/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let r = send(&client, req).await;
            assert_eq!(r.status, 200);
        }
    })
    .await;
    assert_eq!(up.hits(), 100);
    let conns = up.connections();
    assert!(
        (1..=2).contains(&conns),
        "100 sequential requests opened {conns} upstream connections"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn requests_with_bodies_reuse_upstream_connections_too() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&servers_yaml(&[(&up, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    within(60, "50 POSTs", async {
        for i in 0..50 {
            let req = Request::post(format!("http://{addr}/p/{i}"))
                .body(Full::new(Bytes::from(vec![b'x'; 10_000])))
                .unwrap();
            let r = send(&client, req).await;
            assert_eq!(r.status, 200);
        }
    })
    .await;
    assert_eq!(up.hits(), 50);
    assert!(up.connections() <= 2, "{} connections", up.connections());
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn each_server_of_a_group_keeps_its_own_pooled_connection() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let proxy = start_proxy(&yaml(&servers_yaml(&[(&a, 1), (&b, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    within(60, "100 requests", async {
        for i in 0..100 {
            let req = Request::get(format!("http://{addr}/p/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            assert_eq!(send(&client, req).await.status, 200);
        }
    })
    .await;
    assert_eq!((a.hits(), b.hits()), (50, 50));
    assert!(
        a.connections() <= 2 && b.connections() <= 2,
        "{} + {}",
        a.connections(),
        b.connections()
    );
    assert!(proxy.shutdown().await);
}
