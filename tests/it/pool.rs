//! Pooled upstream connections: sequential requests reuse one keep-alive
//! connection instead of opening one each.

use crate::support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

fn yaml(servers: &str) -> String {
    ConfigYaml::new().group("g", "", servers).build()
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

/// A raw HTTP/1.1 upstream: answers every request on a connection with
/// `200 ok` (keep-alive); `close_after` closes each connection that long
/// after its first response. Sends on `events` "accept" per connection and
/// "eof" when weir closed a connection.
async fn raw_upstream(
    close_after: Option<std::time::Duration>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let _ = tx.send("accept");
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered = false;
                loop {
                    let read = match close_after {
                        Some(d) if answered => tokio::time::timeout(d, s.read(&mut chunk)).await,
                        _ => Ok(s.read(&mut chunk).await),
                    };
                    match read {
                        Err(_) => return, // close_after passed: drop the socket
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            let _ = tx.send("eof");
                            return;
                        }
                        Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // Requests here have no body.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        answered = true;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn raw_yaml(addr: std::net::SocketAddr, pool: &str) -> String {
    ConfigYaml::new()
        .group("g", "", &format!("{}{pool}", server(addr)))
        .build()
}

async fn get_status(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    addr: std::net::SocketAddr,
) -> u16 {
    let req = Request::get(format!("http://{addr}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, req).await.status.as_u16()
}

/// weir closes a pooled connection that stayed idle past `pool.idle_timeout`.
#[tokio::test]
async fn an_idle_pooled_connection_is_closed_after_the_pool_idle_timeout() {
    let (up, mut events) = raw_upstream(None).await;
    let proxy = start_proxy(&raw_yaml(up, "    pool:\n      idle_timeout: 300ms\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    assert_eq!(get_status(&client, addr).await, 200);
    assert_eq!(events.recv().await, Some("accept"));
    // Closed by weir within two idle periods (plus slack), not kept forever.
    let ev = within(
        5,
        "weir closing the idle upstream connection",
        events.recv(),
    )
    .await;
    assert_eq!(ev, Some("eof"));
    // The next request connects anew and works.
    assert_eq!(get_status(&client, addr).await, 200);
    assert_eq!(events.recv().await, Some("accept"));
    assert!(proxy.shutdown().await);
}

/// A server that closes idle keep-alive connections (as nginx's
/// keepalive_timeout does) costs the client nothing: the closed pooled
/// connection is skipped and the request goes on a new one.
#[tokio::test]
async fn a_pooled_connection_closed_by_the_server_is_replaced_without_an_error() {
    let (up, mut events) = raw_upstream(Some(std::time::Duration::from_millis(50))).await;
    let proxy = start_proxy(&raw_yaml(up, "    retries: 0\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    for i in 0..5 {
        assert_eq!(get_status(&client, addr).await, 200, "request {i}");
        let ev = within(5, "upstream accept", events.recv()).await;
        assert_eq!(ev, Some("accept"), "request {i}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(proxy.shutdown().await);
}

/// `max_idle_per_server: 0` turns pooling off: every request connects, and
/// weir closes the connection after the response.
#[tokio::test]
async fn max_idle_zero_disables_pooling() {
    let (up, mut events) = raw_upstream(None).await;
    let proxy = start_proxy(&raw_yaml(up, "    pool:\n      max_idle_per_server: 0\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    for i in 0..3 {
        assert_eq!(get_status(&client, addr).await, 200);
        assert_eq!(events.recv().await, Some("accept"), "request {i}");
        let ev = within(5, "weir closing the connection", events.recv()).await;
        assert_eq!(ev, Some("eof"), "request {i}");
    }
    assert!(proxy.shutdown().await);
}
