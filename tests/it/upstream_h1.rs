//! weir's own HTTP/1.1 upstream client (src/upstream/h1) against a raw-socket
//! server that answers with scripted bytes: each framing of RFC 9112 §6.3,
//! interim responses, trailers, early answers, broken answers, and when the
//! connection may be reused.

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the scripted server sends for one request, then whether it closes.
#[derive(Clone)]
struct Answer {
    bytes: Vec<u8>,
    close: bool,
}

/// The hyper client of these tests (support's `client()`).
type TestClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// The server closes the connection without answering.
fn hang_up() -> Answer {
    Answer {
        bytes: Vec::new(),
        close: true,
    }
}

/// True when the client did not get a complete response to `req`: the
/// connection closed before the head, or the body failed.
async fn cut_short(client: &TestClient, req: Request<Full<Bytes>>) -> bool {
    match client.request(req).await {
        Ok(resp) => resp.into_body().collect().await.is_err(),
        Err(_) => true,
    }
}

fn answer(bytes: &str) -> Answer {
    Answer {
        bytes: bytes.as_bytes().to_vec(),
        close: false,
    }
}

/// A raw server: reads each request (head, and a body by its
/// `content-length` or chunked coding, unless `read_body` is false), records
/// it, and sends `script(n)` for the n-th request (from 0).
struct Raw {
    addr: SocketAddr,
    accepts: Arc<Mutex<usize>>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Raw {
    async fn start(
        read_body: bool,
        script: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Raw {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(Mutex::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let (acc, reqs) = (accepts.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                *acc.lock().unwrap() += 1;
                let (reqs, script) = (reqs.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(req) = read_request(&mut s, &mut buf, read_body).await else {
                            return;
                        };
                        let n = {
                            let mut r = reqs.lock().unwrap();
                            r.push(req);
                            r.len() - 1
                        };
                        let a = script(n);
                        if s.write_all(&a.bytes).await.is_err() || a.close {
                            return;
                        }
                    }
                });
            }
        });
        Raw {
            addr,
            accepts,
            requests,
        }
    }

    fn accepts(&self) -> usize {
        *self.accepts.lock().unwrap()
    }

    fn request(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.requests.lock().unwrap()[i]).into_owned()
    }
}

/// Reads one request from `s` (bytes already read are in `buf`); `None` at EOF.
async fn read_request(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    read_body: bool,
) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut end = head_end;
    if read_body {
        if let Some(cl) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            end = head_end + cl;
        } else if head.contains("transfer-encoding: chunked") {
            end = loop {
                if let Some(i) = buf[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                    break head_end + i + 5;
                }
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            };
        }
        while buf.len() < end {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Some(buf.drain(..end).collect())
}

async fn proxy_for(raw: &Raw) -> weir::Running {
    let yaml = ConfigYaml::new()
        .group("g", "    retries: 0\n", &server(raw.addr))
        .build();
    start_proxy(&yaml).await
}

/// [`proxy_for`] with its listener's address and a hyper client.
async fn proxied(raw: &Raw) -> (weir::Running, SocketAddr, TestClient) {
    let proxy = proxy_for(raw).await;
    let addr = proxy.local_addr("http").unwrap();
    (proxy, addr, client())
}

fn get(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn a_chunked_response_with_trailers_streams_through_and_the_connection_is_reused() {
    let raw = Raw::start(true, |_| {
        answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nX-Checksum: 1\r\n\r\n")
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    for _ in 0..3 {
        let r = send(&client, get(addr, "/c")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello, world");
    }
    assert_eq!(
        raw.accepts(),
        1,
        "the chunked responses ended cleanly and reused one connection"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn transfer_encoding_wins_over_content_length_and_the_connection_is_not_reused() {
    let raw = Raw::start(true, |_| {
        answer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    for _ in 0..2 {
        let r = send(&client, get(addr, "/both")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "abc");
        assert!(r.headers.get("content-length").is_none_or(|v| v == "3"));
    }
    assert_eq!(
        raw.accepts(),
        2,
        "a response with both framings closes its connection"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_response_without_a_length_is_read_to_the_close() {
    let raw = Raw::start(true, |_| Answer {
        bytes: b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nuntil the end".to_vec(),
        close: true,
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    for _ in 0..2 {
        let r = send(&client, get(addr, "/eof")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "until the end");
    }
    assert_eq!(raw.accepts(), 2);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_are_not_reused() {
    let raw = Raw::start(true, |n| {
        if n % 2 == 0 {
            answer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na")
        } else {
            answer("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb")
        }
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    assert_eq!(send(&client, get(addr, "/1")).await.text(), "a");
    assert_eq!(send(&client, get(addr, "/2")).await.text(), "b");
    assert_eq!(send(&client, get(addr, "/3")).await.text(), "a");
    assert_eq!(raw.accepts(), 3);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn head_204_and_304_have_no_body_whatever_their_fields_say() {
    let raw = Raw::start(true, |n| match n {
        0 => answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        1 => answer("HTTP/1.1 204 No Content\r\n\r\n"),
        _ => answer("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    let head = Request::head(format!("http://{addr}/h"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&client, head).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], "5");
    assert!(r.body.is_empty());
    assert_eq!(send(&client, get(addr, "/n")).await.status, 204);
    assert_eq!(send(&client, get(addr, "/m")).await.status, 304);
    assert_eq!(raw.accepts(), 1, "bodiless answers keep the connection");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let raw = Raw::start(true, |_| {
        answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nmade")
    })
    .await;
    let proxy = proxy_for(&raw).await;
    let addr = proxy.local_addr("http").unwrap();
    let r = send(&client(), get(addr, "/i")).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), "made");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn broken_answers_are_502_and_never_reach_the_client_as_a_response() {
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let raw = Raw::start(true, move |n| match n {
        0 => answer("SSH-2.0-OpenSSH_9.2\r\n\r\n"),
        1 => answer("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
        2 => answer("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx"),
        3 => Answer {
            bytes: huge.clone().into_bytes(),
            close: true,
        },
        _ => answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    for i in 0..4 {
        let r = send(&client, get(addr, &format!("/{i}"))).await;
        assert_eq!(r.status, 502, "answer {i}");
    }
    // A chunked body that breaks after the head: the client's response is cut
    // short (the connection is closed before or while the body is sent),
    // never a complete body.
    assert!(
        cut_short(&client, get(addr, "/4")).await,
        "a broken chunked body reached the client as complete"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_for_the_client_and_the_next_request_connects_anew() {
    let raw = Raw::start(true, |n| {
        if n == 0 {
            Answer {
                bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345".to_vec(),
                close: true,
            }
        } else {
            answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    // Cut before or while weir sends the body on: never a complete body.
    assert!(
        cut_short(&client, get(addr, "/cut")).await,
        "a truncated body reached the client as complete"
    );
    assert_eq!(send(&client, get(addr, "/next")).await.text(), "ok");
    assert_eq!(raw.accepts(), 2);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn extra_bytes_after_a_response_close_the_connection() {
    let raw = Raw::start(true, |_| {
        answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    for _ in 0..2 {
        assert_eq!(send(&client, get(addr, "/x")).await.text(), "ok");
    }
    assert_eq!(
        raw.accepts(),
        2,
        "bytes the server sent unasked are never taken as the next response"
    );
    assert!(proxy.shutdown().await);
}

/// A body of unknown length: its frames, then its end.
struct Frames(Vec<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| self.0.remove(0));
        std::task::Poll::Ready(next.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test]
async fn request_bodies_keep_their_length_or_are_chunked() {
    let raw = Raw::start(true, |_| {
        answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    let post = Request::post(format!("http://{addr}/len"))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_eq!(send(&client, post).await.status, 200);
    let first = raw.request(0);
    assert!(first.starts_with("POST /len HTTP/1.1\r\n"), "{first}");
    assert!(
        first.to_ascii_lowercase().contains("content-length: 5\r\n"),
        "{first}"
    );
    assert!(first.ends_with("\r\n\r\nhello"), "{first}");
    // A body of unknown length (streamed by the client, chunked) is chunked.
    let streamed = Request::post(format!("http://{addr}/chunked"))
        .body(Frames(vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cde"),
        ]))
        .unwrap();
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let status = within(10, "the streamed POST", c.request(streamed))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let second = raw.request(1).to_ascii_lowercase();
    assert!(
        second.contains("transfer-encoding: chunked\r\n"),
        "{second}"
    );
    assert!(!second.contains("content-length"), "{second}");
    let body = &second[second.find("\r\n\r\n").unwrap() + 4..];
    let decoded: String = body
        .split("\r\n")
        .collect::<Vec<_>>()
        .chunks(2)
        .filter(|c| c.len() == 2 && c[0] != "0")
        .map(|c| c[1])
        .collect();
    assert_eq!(decoded, "abcde", "{body:?}");
    assert!(body.ends_with("0\r\n\r\n"), "{body:?}");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn an_answer_before_the_body_is_read_reaches_the_client() {
    // The server answers 413 at the head, never reading the 1 MiB body, and
    // closes: the client gets the 413, not a 502 or a hang.
    let raw = Raw::start(false, |_| Answer {
        bytes:
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
                .to_vec(),
        close: true,
    })
    .await;
    let proxy = proxy_for(&raw).await;
    let addr = proxy.local_addr("http").unwrap();
    let post = Request::post(format!("http://{addr}/upload"))
        .body(Full::new(Bytes::from(vec![b'x'; 1 << 20])))
        .unwrap();
    let status = within(20, "the early answer", async {
        match client().request(post).await {
            Ok(r) => Some(r.status().as_u16()),
            // The client may see its upload cut when the server closes.
            Err(_) => None,
        }
    })
    .await;
    assert!(matches!(status, Some(413) | None), "{status:?}");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_server_that_closes_without_answering_is_a_502() {
    let raw = Raw::start(true, |_| hang_up()).await;
    let proxy = proxy_for(&raw).await;
    let addr = proxy.local_addr("http").unwrap();
    let r = within(15, "the 502", send(&client(), get(addr, "/gone"))).await;
    assert_eq!(r.status, 502);
    let _ = tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(proxy.shutdown().await);
}

/// The server closes a pooled connection just as the next request goes out
/// on it (no response byte): an idempotent request goes on a new
/// connection to the same server, even with `retries: 0`; a POST is not
/// replayed (it may have been processed) and gets a 502.
#[tokio::test]
async fn a_get_on_a_pooled_connection_closed_unanswered_goes_on_a_new_one() {
    let raw = Raw::start(true, |n| match n {
        1 | 4 => hang_up(),
        _ => answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    assert_eq!(send(&client, get(addr, "/0")).await.status, 200);
    // Request 1 reaches the pooled connection, which closes unanswered;
    // request 2 is the same GET on a new connection.
    let r = send(&client, get(addr, "/1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
    assert_eq!(raw.accepts(), 2);
    assert!(raw.request(2).starts_with("GET /1 "), "{}", raw.request(2));
    // Request 3 goes on the new pooled connection; request 4 (a DELETE is
    // idempotent too) on it closes, and its replay is request 5.
    assert_eq!(send(&client, get(addr, "/3")).await.status, 200);
    let delete = Request::delete(format!("http://{addr}/4"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&client, delete).await.status, 200);
    assert_eq!(raw.accepts(), 3);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_post_on_a_pooled_connection_closed_unanswered_is_not_replayed() {
    let raw = Raw::start(true, |n| match n {
        1 => hang_up(),
        _ => answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    })
    .await;
    let (proxy, addr, client) = proxied(&raw).await;
    assert_eq!(send(&client, get(addr, "/0")).await.status, 200);
    let post = Request::post(format!("http://{addr}/1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&client, post).await.status, 502);
    assert_eq!(
        raw.requests.lock().unwrap().len(),
        2,
        "the POST went out once"
    );
    assert!(proxy.shutdown().await);
}

/// A GET the first server closed unanswered is retried on the other one
/// with all its header fields (the request comes back from the failed
/// attempt; no copy is kept for it).
#[tokio::test]
async fn a_retried_get_keeps_its_header_fields() {
    let dead = Raw::start(true, |_| hang_up()).await;
    let live = Raw::start(true, |_| {
        answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    })
    .await;
    let servers = format!("{}{}", server(dead.addr), server(live.addr));
    let yaml = ConfigYaml::new()
        .group("g", "    retries: 1\n", &servers)
        .build();
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    for i in 0..4 {
        let req = Request::get(format!("http://{addr}/r{i}"))
            .header("x-trace", format!("t{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = send(&client, req).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert!(
        !dead.requests.lock().unwrap().is_empty(),
        "no attempt went to the dead server"
    );
    let seen = live.requests.lock().unwrap().len();
    assert_eq!(seen, 4);
    for i in 0..seen {
        let req = live.request(i).to_ascii_lowercase();
        assert!(req.contains("\r\nhost: "), "{req}");
        assert!(req.contains("\r\nx-forwarded-for: 127.0.0.1"), "{req}");
        assert!(req.contains("\r\nx-trace: t"), "{req}");
    }
    assert!(proxy.shutdown().await);
}
