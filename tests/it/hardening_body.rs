//! Client faults while a request body streams are the client's, not the
//! server's (issue 13, item 2): a malformed chunked body gets 400, a stalled
//! body 408 (`client_body_timeout`), a client that leaves gets nothing — and
//! none counts against the server (passive ejection, EWMA, error counters).

use crate::support;

use std::time::Duration;

use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that reads the whole body before answering (so the body's
/// failure shows up as the upstream request's failure).
async fn collecting_upstream() -> Upstream {
    spawn_upstream_with("app", |req| async move {
        match req.into_body().collect().await {
            Ok(b) => text_response(
                http::StatusCode::OK,
                "app",
                &format!("{} bytes", b.to_bytes().len()),
            ),
            Err(_) => text_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "app",
                "body failed",
            ),
        }
    })
    .await
}

fn yaml(upstream: &Upstream, listener_extra: &str, group_extra: &str) -> String {
    ConfigYaml::new()
        .listener_extra(listener_extra)
        .admin("")
        .group(
            "app",
            &format!(
                "    passive:\n      consecutive_failures: 2\n      ejection: 30s\n{group_extra}"
            ),
            &servers_yaml(&[(upstream, 1)]),
        )
        .build()
}

/// The server's `consecutive_failures` and `ejected` from `/status`.
async fn server_health(proxy: &weir::Running) -> (u64, bool) {
    let status = get(proxy.admin_addr().unwrap(), "/status").await.text();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let s = &v["groups"][0]["servers"][0];
    (
        s["consecutive_failures"].as_u64().unwrap(),
        s["ejected"].as_bool().unwrap(),
    )
}

async fn metrics(proxy: &weir::Running) -> String {
    get(proxy.admin_addr().unwrap(), "/metrics").await.text()
}

/// Sum of the samples of `name` whose line contains `filter`.
fn sample_sum(m: &str, name: &str, filter: &str) -> u64 {
    m.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Upstream failures counted against servers (connect, timeout, protocol).
fn server_errors(m: &str) -> u64 {
    [
        "weir_upstream_connect_errors_total",
        "weir_upstream_timeouts_total",
        "weir_upstream_protocol_errors_total",
    ]
    .iter()
    .map(|n| sample_sum(m, n, ""))
    .sum()
}

#[tokio::test]
async fn six_malformed_chunked_bodies_leave_the_server_in_service() {
    let upstream = collecting_upstream().await;
    let proxy = start_proxy(&yaml(&upstream, "", "")).await;
    let addr = proxy.local_addr("http").unwrap();
    // RFC 9112 §7.1: a chunk size is hex; "zz" is not, and 2^72 overflows.
    let bodies: [&[u8]; 6] = [
        b"zz\r\n",
        b"5\r\nhello\r\nzz\r\n",
        b"fffffffffffffffffff\r\n",
        b"3\r\nabcXY\r\n",
        b"-1\r\n",
        b"5 5\r\nhello\r\n",
    ];
    for body in bodies {
        let mut req =
            b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let response = within(10, "malformed body", raw_exchange(addr, &req)).await;
        assert_eq!(
            raw_status(&response),
            400,
            "{:?}: {response}",
            String::from_utf8_lossy(body)
        );
    }
    let (failures, ejected) = server_health(&proxy).await;
    assert_eq!((failures, ejected), (0, false), "the server was blamed");
    for _ in 0..3 {
        assert_eq!(
            request_host(addr, "GET", "a.test", "/", &[]).await.status,
            200
        );
    }
    let m = metrics(&proxy).await;
    assert!(
        m.contains("weir_downstream_rejected_total{listener=\"http\",reason=\"malformed_body\"} 6"),
        "{m}"
    );
    assert_eq!(server_errors(&m), 0, "a server error was counted:\n{m}");
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_is_not_the_servers_fault() {
    let upstream = collecting_upstream().await;
    let proxy = start_proxy(&yaml(&upstream, "    client_body_timeout: 300ms\n", "")).await;
    let addr = proxy.local_addr("http").unwrap();
    for _ in 0..3 {
        let response = within(
            5,
            "stalled body answered",
            raw_exchange(
                addr,
                b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\nonly a few bytes",
            ),
        )
        .await;
        assert_eq!(raw_status(&response), 408, "{response}");
    }
    assert_eq!(server_health(&proxy).await, (0, false));
    assert_eq!(
        request_host(addr, "GET", "a.test", "/", &[]).await.status,
        200
    );
    let m = metrics(&proxy).await;
    assert!(
        m.contains("weir_downstream_rejected_total{listener=\"http\",reason=\"body_timeout\"} 3"),
        "{m}"
    );
    assert_eq!(server_errors(&m), 0, "{m}");
}

#[tokio::test]
async fn a_body_trickling_past_the_response_timeout_is_408_not_504() {
    let upstream = collecting_upstream().await;
    let proxy = start_proxy(&yaml(
        &upstream,
        "    client_body_timeout: 5s\n",
        "    timeouts:\n      response: 400ms\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    // A byte every 100 ms: never a stall, but slower than the response timeout.
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..30 {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
        {
            out.extend_from_slice(&buf[..n]);
            if n == 0 || out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(raw_status(&text), 408, "{text}");
    assert_eq!(server_health(&proxy).await, (0, false));
}

#[tokio::test]
async fn a_client_leaving_mid_body_is_not_the_servers_fault() {
    let upstream = collecting_upstream().await;
    let proxy = start_proxy(&yaml(&upstream, "", "")).await;
    let addr = proxy.local_addr("http").unwrap();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\n\r\npart")
            .await
            .unwrap();
        // Let the head reach the server, then go away.
        within(5, "upload reached the server", async {
            while upstream.hits() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        drop(s);
    }
    // Wait until weir has finished all four (each is counted on its route).
    within(10, "the four uploads end", async {
        while sample_sum(&metrics(&proxy).await, "weir_route_requests_total", "4xx") < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(server_health(&proxy).await, (0, false));
    assert_eq!(server_errors(&metrics(&proxy).await), 0);
    assert_eq!(
        request_host(addr, "GET", "a.test", "/", &[]).await.status,
        200
    );
}

#[tokio::test]
async fn a_server_that_stops_reading_the_body_is_still_the_servers_fault() {
    // The other side of the trickle case: the client sends at full speed and
    // the server neither reads nor answers; the response timeout is the
    // server's (504, counted), not the client's.
    let upstream = spawn_upstream_with("stuck", |_req| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        text_response(http::StatusCode::OK, "stuck", "")
    })
    .await;
    let proxy = start_proxy(&yaml(&upstream, "", "    timeouts:\n      response: 1s\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let size = 32 << 20;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: {size}\r\n\r\n");
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    within(10, "answer to the stuck upload", async {
        let mut buf = [0u8; 1024];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(raw_status(&text), 504, "{text}");
    assert_eq!(
        server_health(&proxy).await.0,
        1,
        "the stuck server was not blamed"
    );
}
