//! Compression streams (issue 16 point 1): a long response goes through
//! the encoder without being held. The upstream sends its first chunk and
//! then waits until the client has decoded something: a proxy that
//! buffered the body would never answer. The whole body then streams with
//! the test process's memory (client, weir and upstream together) flat.
//! Alone in its binary so that no other test moves the process's memory.

use crate::support;

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::{TcpListener, TcpStream};

/// Bytes of the long streamed body (256 MiB; `WEIR_COMPRESS_STREAM_MIB=1024`
/// runs the 1 GiB case: about 17 s in a debug build).
fn stream_size() -> u64 {
    std::env::var("WEIR_COMPRESS_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256u64)
        * 1024
        * 1024
}

/// Largest growth of VmRSS allowed while the body streams.
const MAX_GROWTH: u64 = 48 * 1024 * 1024;

/// A text body generated on the fly from one 64 KiB chunk: the first
/// chunk, then nothing until `gate` opens, then the rest.
struct Gated {
    left: u64,
    chunk: Bytes,
    sent_first: bool,
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Body for Gated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if self.sent_first {
            if let Some(g) = &mut self.gate {
                match Pin::new(g).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(_) => self.gate = None,
                }
            }
        }
        self.sent_first = true;
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    kb * 1024
}

/// Counts what is written to it and keeps nothing.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_body_streams_through_the_encoder_with_flat_memory() {
    // Measures this process: alone in a child process of the test binary.
    if !support::isolated(
        module_path!(),
        "a_long_body_streams_through_the_encoder_with_flat_memory",
    ) {
        return;
    }
    let size = stream_size();
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let gate_rx = Arc::new(std::sync::Mutex::new(Some(gate_rx)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let chunk: Bytes = {
        let line = b"{\"event\":\"tick\",\"payload\":\"abcdefghijklmnopqrstuvwxyz0123456789\"}\n";
        let mut v = Vec::with_capacity(64 * 1024);
        let mut i = 0u32;
        while v.len() < 64 * 1024 {
            v.extend_from_slice(format!("{i:08} ").as_bytes());
            v.extend_from_slice(line);
            i += 1;
        }
        v.truncate(64 * 1024);
        Bytes::from(v)
    };
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (gate_rx, chunk) = (gate_rx.clone(), chunk.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let gate = gate_rx.lock().unwrap().take();
                    let chunk = chunk.clone();
                    async move {
                        let mut r = Response::new(Gated {
                            left: size,
                            chunk,
                            sent_first: false,
                            gate,
                        });
                        r.headers_mut()
                            .insert("content-type", "application/x-ndjson".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let weir = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n    \
         compression: {{ types: [application/x-ndjson], levels: {{ gzip: 1 }} }}\n\
         groups:\n  g:\n    servers:\n      - address: {up}\n"
    ))
    .await;
    let addr = weir.local_addr("http").unwrap();

    let base = rss();
    let peak = Arc::new(AtomicU64::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (decoded, wire) = within(600, "compressed stream", async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/stream")
            .header("host", "example.com")
            .header("accept-encoding", "gzip")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let mut body = resp.into_body();
        let mut decoder = flate2::write::GzDecoder::new(Counter::default());
        let mut wire = 0u64;
        let mut gate = Some(gate_tx);
        // A proxy that held the body would stop here: each frame within 10 s.
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the next frame within 10 s")
        {
            let frame = frame.expect("body frame");
            let Some(data) = frame.data_ref() else {
                continue;
            };
            wire += data.len() as u64;
            decoder.write_all(data).unwrap();
            decoder.flush().unwrap();
            if decoder.get_ref().0 > 0 {
                // The first chunk arrived decodable while the server still
                // holds the rest: the encoder does not wait for the end.
                if let Some(g) = gate.take() {
                    g.send(()).unwrap();
                }
            }
        }
        assert!(
            gate.is_none(),
            "the first chunk never came through on its own"
        );
        let counter = decoder.finish().expect("gzip stream ends cleanly");
        (counter.0, wire)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let growth = peak.load(Ordering::Relaxed).saturating_sub(base);
    assert_eq!(decoded, size, "every byte decoded");
    assert!(
        wire * 4 < size,
        "compressed: {wire} bytes on the wire for {size}"
    );
    assert!(
        growth < MAX_GROWTH,
        "memory grew by {} MiB while streaming {} MiB",
        growth / (1024 * 1024),
        size / (1024 * 1024)
    );
    server.abort();
}
