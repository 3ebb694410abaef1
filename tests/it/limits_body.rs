//! `routes[].max_request_body`: 413 by Content-Length before anything is
//! sent upstream, and 413 when a chunked (HTTP/1.1) or HTTP/2 body streams
//! past the limit, with the upstream request abandoned (the upstream never
//! sees a complete body).

use crate::limits_support;
use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use limits_support::{metric, metrics};
use support::{raw_status, server, spawn_upstream_with, start_proxy, text_response, ConfigYaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that reads the whole body and counts complete bodies and
/// their bytes.
async fn body_counting_upstream() -> (support::Upstream, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let complete = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let (c, b) = (complete.clone(), bytes.clone());
    let up = spawn_upstream_with("a", move |req| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            match req.into_body().collect().await {
                Ok(body) => {
                    c.fetch_add(1, Ordering::SeqCst);
                    b.fetch_add(body.to_bytes().len(), Ordering::SeqCst);
                    text_response(StatusCode::OK, "a", "got it")
                }
                Err(_) => text_response(StatusCode::BAD_REQUEST, "a", "cut"),
            }
        }
    })
    .await;
    (up, complete, bytes)
}

fn yaml(upstream: std::net::SocketAddr) -> String {
    ConfigYaml::new()
        .admin("")
        .routes("  - name: upload\n    group: g\n    max_request_body: 1KiB\n")
        .group("g", "", &server(upstream))
        .build()
}

/// Writes `head` then `chunks` (each a separate write) and reads the reply
/// until the server closes or 5 s pass.
async fn exchange(addr: std::net::SocketAddr, head: &str, chunks: &[Vec<u8>]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for c in chunks {
        if s.write_all(c).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn chunk(n: usize) -> Vec<u8> {
    let mut c = format!("{n:x}\r\n").into_bytes();
    c.extend(std::iter::repeat_n(b'x', n));
    c.extend_from_slice(b"\r\n");
    c
}

#[tokio::test]
async fn content_length_over_the_limit_gets_413_without_upstream_request() {
    let (up, complete, _) = body_counting_upstream().await;
    let proxy = start_proxy(&yaml(up.addr)).await;
    let addr = proxy.local_addr("http").unwrap();
    // Only the head is sent: the answer must not wait for the body.
    let r = exchange(
        addr,
        "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        &[],
    )
    .await;
    assert_eq!(raw_status(&r), 413, "{r}");
    assert!(r.contains("413 Payload Too Large"), "{r}");
    // Exactly at the limit passes.
    let body = vec![b'y'; 1024];
    let mut head =
        "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n"
            .to_string()
            .into_bytes();
    head.extend_from_slice(&body);
    let r = support::raw_exchange(addr, &head).await;
    assert_eq!(raw_status(&r), 200, "{r}");
    assert_eq!(up.hits(), 1);
    assert_eq!(complete.load(Ordering::SeqCst), 1);
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(&m, "weir_request_body_too_large_total{route=\"upload\"}"),
        Some(1.0),
        "{m}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn chunked_body_streaming_past_the_limit_gets_413() {
    let (up, complete, bytes) = body_counting_upstream().await;
    let proxy = start_proxy(&yaml(up.addr)).await;
    let addr = proxy.local_addr("http").unwrap();
    let head =
        "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    // 4 × 512 bytes, and no final chunk: weir must answer on its own.
    let chunks: Vec<Vec<u8>> = (0..4).map(|_| chunk(512)).collect();
    let r = exchange(addr, head, &chunks).await;
    assert_eq!(raw_status(&r), 413, "{r}");
    // A chunked body under the limit goes through whole.
    let mut small: Vec<Vec<u8>> = (0..2).map(|_| chunk(400)).collect();
    small.push(b"0\r\n\r\n".to_vec());
    let r = exchange(addr, head, &small).await;
    assert_eq!(raw_status(&r), 200, "{r}");
    // The upstream saw one complete body (the small one), never the large one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(complete.load(Ordering::SeqCst), 1);
    assert_eq!(bytes.load(Ordering::SeqCst), 800);
    proxy.shutdown().await;
}

#[tokio::test]
async fn h2_body_streaming_past_the_limit_gets_413() {
    let (up, complete, _) = body_counting_upstream().await;
    let proxy = start_proxy(&yaml(up.addr)).await;
    let addr = proxy.local_addr("http").unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // A body of unknown length: DATA frames of 300 bytes, without end.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    tokio::spawn(async move {
        for _ in 0..10 {
            if tx
                .send(Ok(Frame::data(Bytes::from(vec![b'z'; 300]))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Keep the stream open: the limit, not the end, must decide.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = Request::post(format!("http://{addr}/up"))
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("answer within 5s")
        .expect("response");
    assert_eq!(resp.status(), 413);
    assert_eq!(complete.load(Ordering::SeqCst), 0);
    proxy.shutdown().await;
}

/// A `Stream` over an mpsc receiver (no tokio-stream dependency).
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
