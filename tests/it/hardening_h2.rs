//! HTTP/2 smuggling, flood and idle cases over raw frames and a real h2
//! client (issue 13, items 3, 5 and 9). Each cites its RFC section or CVE and
//! asserts the server behind weir received nothing.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK literal header field without indexing, new name (RFC 7541 §6.2.2);
/// names and values shorter than 127 bytes.
fn literal(name: &str, value: &str) -> Vec<u8> {
    assert!(name.len() < 127 && value.len() < 127);
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

/// A GET / header block: :method GET, :scheme http, :path /, :authority a.test.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x84];
    b.push(0x01); // literal without indexing, name = static index 1 (:authority)
    b.push(6);
    b.extend_from_slice(b"a.test");
    b
}

async fn h2_connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s
}

/// Reads until weir closes the connection; returns the bytes and the frame
/// types seen (best effort), or panics after `secs`.
async fn read_until_closed(s: &mut TcpStream, secs: u64, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    within(secs, what, async {
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

/// Frame types in `bytes` (server frames; no preface).
fn frame_types(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 9 <= bytes.len() {
        let len = (usize::from(bytes[i]) << 16)
            | (usize::from(bytes[i + 1]) << 8)
            | usize::from(bytes[i + 2]);
        let end = (i + 9 + len).min(bytes.len());
        out.push((bytes[i + 3], bytes[i + 9..end].to_vec()));
        i += 9 + len;
    }
    out
}

fn yaml(upstream: &Upstream, listener_extra: &str) -> String {
    ConfigYaml::new()
        .listener_extra(listener_extra)
        .admin("")
        .group("app", "", &servers_yaml(&[(upstream, 1)]))
        .build()
}

#[tokio::test]
async fn h2_host_differing_from_authority_is_malformed() {
    // RFC 9113 §8.3.1: a host field naming another entity than :authority.
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut block = get_block();
    block.extend(literal("host", "internal.test"));
    let mut s = h2_connect(addr).await;
    s.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    // The answer: a HEADERS frame on stream 1 whose :status is 400 (HPACK
    // static index 12, RFC 7541 Appendix A).
    let mut got = Vec::new();
    within(5, "answer to the mismatched request", async {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
            if frame_types(&got).iter().any(|(t, _)| *t == HEADERS) {
                break;
            }
        }
    })
    .await;
    let (_, block) = frame_types(&got)
        .into_iter()
        .find(|(t, _)| *t == HEADERS)
        .unwrap();
    assert_eq!(
        block.first(),
        Some(&0x8c),
        "expected :status 400, got {block:?}"
    );
    drop(s);
    // A well-formed request is served.
    let req = Request::get("http://a.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let ok = h2c_request(addr, req).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        upstream.hits(),
        1,
        "the mismatched request reached the server"
    );
    let m = get(proxy.admin_addr().unwrap(), "/metrics").await.text();
    assert!(
        m.contains("weir_downstream_rejected_total{listener=\"http\",reason=\"host_mismatch\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn h2_header_count_limit_matches_http1() {
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "    max_headers: 20\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut b = Request::get("http://a.test/");
    for i in 0..25 {
        b = b.header(format!("x-h{i}"), "v");
    }
    let r = h2c_request(addr, b.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(r.status, 431);
    assert_eq!(upstream.hits(), 0);
    let mut b = Request::get("http://a.test/");
    for i in 0..10 {
        b = b.header(format!("x-h{i}"), "v");
    }
    let r = h2c_request(addr, b.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn rapid_reset_is_cut_off() {
    // CVE-2023-44487: streams opened and reset at once, in a burst.
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut s = h2_connect(addr).await;
    let block = get_block();
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let _ = s.write_all(&burst).await;
    let got = read_until_closed(&mut s, 10, "rapid-reset connection closed").await;
    let goaway = frame_types(&got).into_iter().any(|(t, _)| t == GOAWAY);
    assert!(goaway, "no GOAWAY for a rapid-reset burst");
    assert!(
        upstream.hits() < 2000,
        "every reset stream reached the server"
    );
    // weir still serves.
    let req = Request::get("http://a.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(h2c_request(addr, req).await.status, 200);
}

#[tokio::test]
async fn continuation_flood_is_cut_off() {
    // The 2024 CONTINUATION flood (VU#421644, CVE-2024-27316 and kin): a
    // header block that never ends.
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut s = h2_connect(addr).await;
    s.write_all(&frame(HEADERS, END_STREAM, 1, &get_block()))
        .await
        .unwrap();
    let piece = literal("x-flood", &"a".repeat(100));
    let mut chunk = Vec::new();
    for _ in 0..100 {
        chunk.extend(frame(CONTINUATION, 0, 1, &piece));
    }
    let started = Instant::now();
    let mut sent = 0usize;
    // At most ~100 MB; weir must close long before.
    while sent < 100 << 20 && started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let _ = read_until_closed(&mut s, 10, "CONTINUATION flood closed").await;
    assert!(
        sent < 10 << 20,
        "weir took {sent} bytes of one header block"
    );
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn a_slow_h2_header_block_is_timed_like_an_h1_head() {
    // request_header_timeout applies to a HEADERS..END_HEADERS block.
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(
        &upstream,
        "    request_header_timeout: 500ms\n    idle_timeout: 60s\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut s = h2_connect(addr).await;
    s.write_all(&frame(HEADERS, END_STREAM, 1, &get_block()))
        .await
        .unwrap();
    // ...and the CONTINUATION never comes. Closed well before idle_timeout.
    let _ = read_until_closed(&mut s, 5, "slow header block closed").await;
    assert_eq!(upstream.hits(), 0);
    let m = get(proxy.admin_addr().unwrap(), "/metrics").await.text();
    assert!(
        m.contains("weir_downstream_rejected_total{listener=\"http\",reason=\"header_timeout\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn an_idle_h2_client_that_never_acks_the_goaway_ping_is_closed() {
    // After idle_timeout weir sends GOAWAY and a PING; a silent client must
    // not keep the connection forever (bounded: idle_timeout again, at most 10s).
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "    idle_timeout: 1s\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut s = h2_connect(addr).await;
    let got = read_until_closed(&mut s, 8, "silent idle h2 connection closed").await;
    let types: Vec<u8> = frame_types(&got).into_iter().map(|(t, _)| t).collect();
    assert!(types.contains(&GOAWAY), "{types:?}");
}

#[tokio::test]
async fn pings_alone_do_not_keep_an_h2_connection_open() {
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "    idle_timeout: 1s\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let s = h2_connect(addr).await;
    let (mut rd, mut wr) = s.into_split();
    let pinger = tokio::spawn(async move {
        for i in 0u64.. {
            if wr
                .write_all(&frame(PING, 0, 0, &i.to_be_bytes()))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    within(8, "pinging idle h2 connection closed", async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    pinger.abort();
}

#[tokio::test]
async fn an_active_h2_connection_stays_open_past_idle_timeout() {
    // The other side of the two tests above: requests are activity.
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "    idle_timeout: 1s\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let req = Request::get("http://a.test/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .expect("connection still open");
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn an_h2_client_resetting_its_upload_is_not_the_servers_fault() {
    // RFC 9113 §8.1: a stream the client resets mid-body is the client leaving.
    // (A guard: hyper drops the request's future on the reset, so nothing may
    // be recorded against the server on the way out.)
    let upstream = spawn_upstream_with("app", |req| async move {
        use http_body_util::BodyExt;
        let ok = req.into_body().collect().await.is_ok();
        text_response(http::StatusCode::OK, "app", if ok { "ok" } else { "cut" })
    })
    .await;
    let proxy = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nroutes:\n  - group: app\ngroups:\n  app:\n    passive:\n      consecutive_failures: 2\n    servers:\n{}",
        servers_yaml(&[(&upstream, 1)])
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    for i in 0..4 {
        let mut s = h2_connect(addr).await;
        let mut block = vec![0x83, 0x86, 0x84, 0x01, 6]; // POST http / :authority
        block.extend_from_slice(b"a.test");
        s.write_all(&frame(HEADERS, END_HEADERS, 1, &block))
            .await
            .unwrap();
        s.write_all(&frame(0x0, 0, 1, b"part of it")).await.unwrap();
        within(5, "upload reached the server", async {
            while upstream.hits() <= i {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        s.write_all(&frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(s);
    }
    let admin = proxy.admin_addr().unwrap();
    // Every forward has ended once nothing is in flight on the server.
    let status = within(10, "the four uploads end", async {
        loop {
            let status: serde_json::Value =
                serde_json::from_str(&get(admin, "/status").await.text()).unwrap();
            if status["groups"][0]["servers"][0]["in_flight"] == 0 {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let server = &status["groups"][0]["servers"][0];
    assert_eq!(server["consecutive_failures"], 0, "{status:#}");
    assert_eq!(server["ejected"], false);
    let req = Request::get("http://a.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(h2c_request(addr, req).await.status, 200);
}
