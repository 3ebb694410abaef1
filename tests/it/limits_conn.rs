//! `max_connections_per_ip` and `max_connections` with real sockets from
//! 127.0.0.2 and 127.0.0.3.

use crate::limits_support;
use crate::support;

use std::time::Duration;

use limits_support::{connect_from, metric, metrics, Conn};
use support::{server, spawn_upstream, start_proxy, ConfigYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn yaml(upstream: std::net::SocketAddr, listener: &str) -> String {
    ConfigYaml::new()
        .listener_extra(listener)
        .admin("")
        .group("g", "", &server(upstream))
        .build()
}

/// True when the server closes `stream` (EOF or reset) within `secs`.
async fn closed_within(stream: &mut tokio::net::TcpStream, secs: u64) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(secs), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("got {n} bytes instead of a close"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn fifth_connection_from_one_address_is_closed() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(up.addr, "    max_connections_per_ip: 4\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    // Four connections from 127.0.0.2, each proven accepted by a request.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = Conn::open("127.0.0.2", addr).await;
        assert_eq!(c.get(addr, "/", &[]).await.status, 200);
        held.push(c);
    }
    // The fifth is closed at once, before any byte of a request.
    let mut fifth = connect_from("127.0.0.2", addr).await;
    assert!(
        closed_within(&mut fifth, 5).await,
        "fifth connection stayed open"
    );
    // Another address is not affected.
    let mut other = Conn::open("127.0.0.3", addr).await;
    assert_eq!(other.get(addr, "/", &[]).await.status, 200);
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(&m, "weir_listener_per_ip_rejected_total{listener=\"http\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "weir_listener_client_addresses{listener=\"http\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "weir_listener_max_connections_per_ip{listener=\"http\"}"
        ),
        Some(4.0),
        "{m}"
    );
    // Closing one frees its place for a new connection from 127.0.0.2.
    drop(held.pop());
    let mut ok = false;
    for _ in 0..50 {
        let mut s = connect_from("127.0.0.2", addr).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        if out.starts_with(b"HTTP/1.1 200") {
            ok = true;
            break;
        }
        // The close of the dropped connection may not be seen yet.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a freed per-address slot was not reusable");
    drop(held);
    proxy.shutdown().await;
}

#[tokio::test]
async fn past_max_connections_new_ones_wait_in_the_backlog() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(up.addr, "    max_connections: 2\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut first = Conn::open("127.0.0.2", addr).await;
    assert_eq!(first.get(addr, "/", &[]).await.status, 200);
    let mut second = Conn::open("127.0.0.3", addr).await;
    assert_eq!(second.get(addr, "/", &[]).await.status, 200);
    // The kernel completes the third handshake, but weir does not accept it:
    // its request waits.
    let mut third = connect_from("127.0.0.2", addr).await;
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut out)).await;
    assert!(waited.is_err(), "the third connection was served: {out:?}");
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(&m, "weir_listener_at_max_connections{listener=\"http\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "weir_listener_max_connections{listener=\"http\"}"),
        Some(2.0),
        "{m}"
    );
    // One closes: the waiting connection is accepted and served.
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(second.get(addr, "/", &[]).await.status, 200);
    proxy.shutdown().await;
}
