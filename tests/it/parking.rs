//! Parking of idle HTTP/1 keep-alive connections: a connection quiet for a
//! watchdog tick gives back its hyper state and buffers and keeps only its
//! socket; the next request on the same socket is served as if nothing
//! happened. A plain connection waits in the listener's parker, holding its
//! socket, its client address and its `max_connections` slot only. Raw TCP
//! clients, so every byte and the socket's identity are ours.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// request_header_timeout 400ms: the watchdog ticks every 100 ms, so a quiet
/// connection parks 100-200 ms after its last byte.
fn yaml(up: &Upstream, idle_timeout: &str) -> String {
    ConfigYaml::new()
        .listener_name(Some("web"))
        .listener_extra(&format!(
            "    request_header_timeout: 400ms\n    idle_timeout: {idle_timeout}\n"
        ))
        .group("g", "", &servers_yaml(&[(up, 1)]))
        .build()
}

fn parked(proxy: &weir::Running) -> i64 {
    proxy
        .registry()
        .all_listener_stats()
        .iter()
        .map(|(_, s)| s.parked.get())
        .sum()
}

fn open(proxy: &weir::Running) -> i64 {
    proxy
        .registry()
        .all_listener_stats()
        .iter()
        .map(|(_, s)| s.open.get())
        .sum()
}

/// Waits (at most 5 s) until `n` connections are parked.
async fn until_parked(proxy: &weir::Running, n: i64) {
    let start = Instant::now();
    while parked(proxy) != n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "expected {n} parked connections, have {}",
            parked(proxy)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body from `s`.
async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    within(10, "response", async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = raw_headers(&head)
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    buf.drain(..end + 4 + len);
                    assert!(buf.is_empty(), "unexpected extra bytes after the response");
                    return (raw_status(&head), body);
                }
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a whole response");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

async fn get_on(s: &mut TcpStream, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(s).await
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until EOF; panics if the server keeps the connection open `secs`.
async fn until_closed(s: &mut TcpStream, secs: u64) {
    let mut buf = [0u8; 64];
    within(secs, "server closing the connection", async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn idle_connection_parks_and_serves_the_next_request_on_the_same_socket() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up, "30s")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut s = connect(addr).await;
    let local = s.local_addr().unwrap();

    assert_eq!(get_on(&mut s, "/one").await, (200, "a".into()));
    until_parked(&proxy, 1).await;

    // The next request, in two pieces with a pause between them.
    s.write_all(b"GET /two HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"st: h\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut s).await, (200, "a".into()));
    assert_eq!(s.local_addr().unwrap(), local, "same socket");
    assert_eq!(up.hits(), 2);
    assert_eq!(up.last_seen().unwrap().uri.path(), "/two");

    // Parks again, and again serves.
    until_parked(&proxy, 1).await;
    assert_eq!(get_on(&mut s, "/three").await, (200, "a".into()));
    assert_eq!(up.hits(), 3);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn pipelined_requests_after_parking_are_all_answered_in_order() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up, "30s")).await;
    let mut s = connect(proxy.local_addr("web").unwrap()).await;
    assert_eq!(get_on(&mut s, "/first").await.0, 200);
    until_parked(&proxy, 1).await;

    s.write_all(b"GET /p1 HTTP/1.1\r\nHost: h\r\n\r\nGET /p2 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // Both responses arrive; read them as one stream.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    within(10, "two pipelined responses", async {
        while buf.windows(8).filter(|w| w == b"HTTP/1.1").count() < 2 || !buf.ends_with(b"a") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert_eq!(up.hits(), 3);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_the_idle_timeout() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up, "1s")).await;
    let mut s = connect(proxy.local_addr("web").unwrap()).await;
    let start = Instant::now();
    assert_eq!(get_on(&mut s, "/").await.0, 200);
    until_parked(&proxy, 1).await;
    until_closed(&mut s, 10).await;
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the 1s idle timeout",
        start.elapsed()
    );
    until_parked(&proxy, 0).await;
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up, "60s")).await;
    let mut s = connect(proxy.local_addr("web").unwrap()).await;
    assert_eq!(get_on(&mut s, "/").await.0, 200);
    until_parked(&proxy, 1).await;
    let start = Instant::now();
    assert!(within(10, "shutdown", proxy.shutdown()).await);
    until_closed(&mut s, 5).await;
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_client_closing_a_parked_connection_frees_it() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up, "60s")).await;
    let mut s = connect(proxy.local_addr("web").unwrap()).await;
    assert_eq!(get_on(&mut s, "/").await.0, 200);
    until_parked(&proxy, 1).await;
    drop(s);
    until_parked(&proxy, 0).await;
    assert_eq!(open(&proxy), 0);
    assert!(proxy.shutdown().await);
}

/// The first bytes decide HTTP/2 (the preface) or HTTP/1; a request whose
/// first byte could begin the preface ("P" of PUT) still reaches HTTP/1.
#[tokio::test]
async fn a_request_starting_like_the_h2_preface_is_served_as_http1() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up, "30s")).await;
    let mut s = connect(proxy.local_addr("web").unwrap()).await;
    s.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"UT /put HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await, (200, "a".into()));
    assert_eq!(up.last_seen().unwrap().method, "PUT");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_parked_connection_keeps_its_place_under_max_connections() {
    let up = spawn_upstream("a").await;
    let yaml = ConfigYaml::new()
        .listener_name(Some("web"))
        .listener_extra("    request_header_timeout: 400ms\n    max_connections: 1\n")
        .group("g", "", &servers_yaml(&[(&up, 1)]))
        .build();
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut first = connect(addr).await;
    assert_eq!(get_on(&mut first, "/").await.0, 200);
    until_parked(&proxy, 1).await;
    // Parked, it still holds the only slot: the second waits unaccepted.
    let mut second = connect(addr).await;
    second
        .write_all(b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(700), second.read(&mut buf)).await;
    assert!(waited.is_err(), "served past max_connections: {waited:?}");
    // The parked one is served again on its socket, and still holds it.
    assert_eq!(get_on(&mut first, "/again").await, (200, "a".into()));
    // Closing it frees the slot: the second is accepted and served.
    drop(first);
    assert_eq!(read_response(&mut second).await, (200, "a".into()));
    assert_eq!(up.last_seen().unwrap().uri.path(), "/second");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_parked_proxy_protocol_connection_keeps_its_client_address() {
    let up = spawn_upstream("a").await;
    let yaml = ConfigYaml::new()
        .listener_name(Some("web"))
        .listener_extra("    request_header_timeout: 400ms\n    proxy_protocol: true\n")
        .group("g", "", &servers_yaml(&[(&up, 1)]))
        .build();
    let proxy = start_proxy(&yaml).await;
    let mut s = connect(proxy.local_addr("web").unwrap()).await;
    s.write_all(b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\n")
        .await
        .unwrap();
    assert_eq!(get_on(&mut s, "/one").await.0, 200);
    until_parked(&proxy, 1).await;
    assert_eq!(get_on(&mut s, "/two").await.0, 200);
    let seen = up.last_seen().unwrap();
    assert_eq!(seen.uri.path(), "/two");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn connections_parked_by_two_workers_are_all_served_again() {
    let up = spawn_upstream("a").await;
    let yaml = format!("workers: 2\n{}", yaml(&up, "30s"));
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut conns = Vec::new();
    for i in 0..40 {
        let mut s = connect(addr).await;
        assert_eq!(get_on(&mut s, &format!("/first/{i}")).await.0, 200);
        conns.push((s.local_addr().unwrap(), s));
    }
    until_parked(&proxy, 40).await;
    for (i, (local, s)) in conns.iter_mut().enumerate() {
        assert_eq!(get_on(s, &format!("/second/{i}")).await, (200, "a".into()));
        assert_eq!(s.local_addr().unwrap(), *local, "same socket");
    }
    assert_eq!(up.hits(), 80);
    // Parked again, then closed by their clients: nothing is left open.
    until_parked(&proxy, 40).await;
    drop(conns);
    until_parked(&proxy, 0).await;
    assert_eq!(open(&proxy), 0);
    assert!(proxy.shutdown().await);
}
