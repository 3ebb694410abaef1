//! Error answers (502, 504, 503 with Retry-After, 431), retries of refused
//! connections on another server, and the downstream connection limits
//! (slowloris request-header timeout, keep-alive idle timeout).

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An address on which nothing listens (bound, then released).
async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

fn proxy_yaml(listener_extra: &str, group_extra: &str, servers: &str) -> String {
    ConfigYaml::new()
        .listener_extra(listener_extra)
        .group("g", group_extra, servers)
        .build()
}

/// Asserts a short plain-text error body naming the status.
fn assert_plain_error(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    let ct = r.headers.get("content-type").map(|v| v.to_str().unwrap());
    assert!(
        ct.is_some_and(|c| c.starts_with("text/plain")),
        "content-type {ct:?}"
    );
    assert!(r.body.len() < 100, "body too long: {:?}", r.text());
    assert!(
        r.text().starts_with(&status.to_string()),
        "body {:?}",
        r.text()
    );
}

#[tokio::test]
async fn only_server_refusing_gives_502_with_retries_0() {
    let dead = refusing_addr().await;
    let proxy = start_proxy(&proxy_yaml(
        "",
        "    retries: 0\n",
        &server_id(dead, "dead"),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    for _ in 0..3 {
        let r = get(addr, "/x").await;
        assert_plain_error(&r, 502);
    }
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn only_server_refusing_gives_502_with_default_retries() {
    // The default is `retries: 1`. With one server there is no other server to
    // try: the client should still get 502 (issue 2: "connect refused → try
    // the next server within retries, then 502"; nginx answers 502 too).
    let dead = refusing_addr().await;
    let proxy = start_proxy(&proxy_yaml("", "", &server_id(dead, "dead"))).await;
    let addr = proxy.local_addr("http").unwrap();
    let r = get(addr, "/x").await;
    assert_plain_error(&r, 502);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn all_servers_refusing_gives_502() {
    let (d1, d2) = (refusing_addr().await, refusing_addr().await);
    let servers = server_id(d1, "d1") + &server_id(d2, "d2");
    let proxy = start_proxy(&proxy_yaml("", "    retries: 1\n", &servers)).await;
    let addr = proxy.local_addr("http").unwrap();
    let r = get(addr, "/x").await;
    assert_plain_error(&r, 502);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn refused_connect_is_retried_on_the_other_server() {
    let dead = refusing_addr().await;
    let live = spawn_upstream("live").await;
    let servers = server_id(dead, "dead") + &servers_yaml(&[(&live, 1)]);
    let proxy = start_proxy(&proxy_yaml("", "    retries: 1\n", &servers)).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    within(30, "20 requests", async {
        for i in 0..20 {
            // A body too: it is untouched when the connect fails, so it can be resent.
            let req = Request::post(format!("http://{addr}/r/{i}"))
                .body(Full::new(Bytes::from(format!("body {i}"))))
                .unwrap();
            let r = send(&client, req).await;
            assert_eq!(r.status, 200, "request {i}: {r:?}");
            assert_eq!(r.server().as_deref(), Some("live"));
        }
    })
    .await;
    assert_eq!(live.hits(), 20);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn without_retries_a_refusing_server_fails_its_share() {
    let dead = refusing_addr().await;
    let live = spawn_upstream("live").await;
    let servers = server_id(dead, "dead") + &servers_yaml(&[(&live, 1)]);
    let proxy = start_proxy(&proxy_yaml("", "    retries: 0\n", &servers)).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(get(addr, &format!("/r/{i}")).await.status.as_u16());
    }
    // Round robin alternates dead, live, dead, live ...
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn upstream_closing_without_answer_gives_502() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let accepter = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                break;
            };
            // Read the request, then hang up without a response.
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let proxy = start_proxy(&proxy_yaml("", "    retries: 1\n", &server_id(up, "rude"))).await;
    let addr = proxy.local_addr("http").unwrap();
    let r = get(addr, "/x").await;
    assert_plain_error(&r, 502);
    accepter.abort();
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn slow_upstream_gives_504_after_response_timeout() {
    let slow = spawn_upstream_with("slow", |_req| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        text_response(StatusCode::OK, "slow", "late")
    })
    .await;
    let proxy = start_proxy(&proxy_yaml(
        "",
        "    timeouts:\n      response: 200ms\n",
        &servers_yaml(&[(&slow, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let start = Instant::now();
    let r = get(addr, "/x").await;
    assert_plain_error(&r, 504);
    // Generous: the 504 must come from weir's timer, not from the upstream finishing.
    assert!(
        start.elapsed() < Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(slow.hits(), 1, "a timed-out request is not retried");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn no_usable_server_gives_503_with_retry_after() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&proxy_yaml("", "", &servers_yaml(&[(&a, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();
    let state = proxy.registry().state(&"g".into(), &"a".into());
    state.set_healthy(false);
    let r = get(addr, "/x").await;
    assert_plain_error(&r, 503);
    assert!(r.headers.contains_key("retry-after"), "{r:?}");
    assert_eq!(a.hits(), 0);
    state.set_healthy(true);
    assert_eq!(get(addr, "/x").await.status, 200);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn request_headers_over_64_kib_get_431() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&proxy_yaml("", "", &servers_yaml(&[(&a, 1)]))).await;
    let addr = proxy.local_addr("http").unwrap();

    // Well under the limit: fine.
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let resp = within(15, "40 KiB header", raw_exchange(addr, ok.as_bytes())).await;
    assert_eq!(raw_status(&resp), 200);

    let big = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything.
    let (mut rd, mut wr) = s.split();
    let write = async {
        let _ = wr.write_all(big.as_bytes()).await;
    };
    let read = async {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    };
    let (_, out) = within(15, "70 KiB header", async { tokio::join!(write, read) }).await;
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(raw_status(&resp), 431, "{resp}");
    assert_eq!(
        a.hits(),
        1,
        "the oversized request must not reach the upstream"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn slowloris_connection_is_closed_after_request_header_timeout() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&proxy_yaml(
        "    request_header_timeout: 300ms\n",
        "",
        &servers_yaml(&[(&a, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // Some servers answer 408 first; then they must close.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a half-sent request head kept the connection open for 3s (timeout 300ms)"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "closed before the timeout: {:?}",
        start.elapsed()
    );
    assert_eq!(a.hits(), 0);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn idle_keep_alive_connection_outlives_the_header_timeout() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&proxy_yaml(
        "    request_header_timeout: 300ms\n    idle_timeout: 30s\n",
        "",
        &servers_yaml(&[(&a, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("/k/{i}"))
            .header("host", "h")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = within(10, "keep-alive request", sender.send_request(req))
            .await
            .unwrap_or_else(|e| panic!("request {i} on the idle connection failed: {e}"));
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        // Idle for well over the header timeout, well under the idle timeout.
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert_eq!(a.hits(), 3);
    assert!(!conn.is_finished(), "the connection was closed while idle");
    drop(sender);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&proxy_yaml(
        "    idle_timeout: 500ms\n",
        "",
        &servers_yaml(&[(&a, 1)]),
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert_eq!(raw_status(&text), 200, "{text}");
    assert!(
        closed.is_ok(),
        "an idle keep-alive connection stayed open 5s (idle_timeout 500ms)"
    );
    assert!(proxy.shutdown().await);
}
