//! HTTP/2 to the servers (`groups.*.protocol: http2`): h2c with prior
//! knowledge and h2 by ALPN over TLS, to in-process hyper servers and to a
//! real nginx (`listen ... http2`, which logs `$server_protocol`); streams
//! multiplexed up to the server's SETTINGS_MAX_CONCURRENT_STREAMS, another
//! connection opened past it; a GOAWAY drains a connection without failing
//! the requests that follow; a stream refused with REFUSED_STREAM is sent
//! again; request bodies and trailers stream through.

use crate::support;
use crate::upstream_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpListener;
use upstream_support::*;

fn yaml(group: &str, addr: SocketAddr, extra: &str) -> String {
    ConfigYaml::new()
        .top("workers: 1\n")
        .listener_name(Some("web"))
        .group(
            group,
            &format!("    protocol: http2\n    retries: 0\n{extra}"),
            &server_id(addr, &format!("{group}-1")),
        )
        .build()
}

#[tokio::test]
async fn h2c_prior_knowledge_multiplexes_on_one_connection() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml("h2c", up.addr, "")).await;
    let addr = proxy.local_addr("web").unwrap();
    // HTTP/1.1 downstream to an http2 group.
    for _ in 0..5 {
        let r = get(addr, "/x?y=1").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "a");
    }
    let seen = up.last_seen().unwrap();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.uri.path_and_query().unwrap(), "/x?y=1");
    assert_eq!(seen.uri.authority().unwrap().as_str(), addr.to_string());
    // h2c downstream, 20 concurrent requests: still one upstream connection.
    let client = h2c_client();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let client = client.clone();
        set.spawn(async move {
            let req = Request::get(format!("http://{addr}/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            send(&client, req).await.status
        });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), StatusCode::OK);
    }
    assert_eq!(up.connections(), 1, "one multiplexed connection");
    assert_eq!(up.hits(), 25);
}

#[tokio::test]
async fn h2_over_tls_by_alpn() {
    capture_logs();
    let pki = Pki::new("h2-tls");
    let (cert, key) = pki.server("srv", &["127.0.0.1"]);
    let up = spawn_tls_upstream("t", server_config(&cert, &key, None, &[b"h2", b"http/1.1"])).await;
    let extra = format!("    tls:\n      ca: {}\n", pki.ca_path.display());
    let proxy = start_proxy(&yaml("h2tls", up.addr, &extra)).await;
    let addr = proxy.local_addr("web").unwrap();
    for _ in 0..3 {
        let r = get(addr, "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers["x-version"], "HTTP/2.0");
    }
    assert_eq!(up.handshakes.load(Ordering::SeqCst), 1);

    // A server that does not offer h2 by ALPN: 502 and a log line saying so.
    let h1 = spawn_tls_upstream("h1", server_config(&cert, &key, None, &[b"http/1.1"])).await;
    let proxy = start_proxy(&yaml("h2tls_noalpn", h1.addr, &extra)).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 502);
    wait_log(&["group=h2tls_noalpn", "did not select h2"]).await;
}

/// An h2c-only server that allows `max_streams` concurrent streams per
/// connection, answers after `delay`, and (with `goaway`) gracefully shuts
/// each connection down after its first response. Counts connections and
/// the most streams seen at once.
struct H2Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn spawn_h2_server(max_streams: u32, delay: Duration, goaway: bool) -> H2Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let (c, p, h) = (connections.clone(), peak.clone(), hits.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (p, h) = (p.clone(), h.clone());
            let now = Arc::new(AtomicUsize::new(0));
            let served = Arc::new(tokio::sync::Notify::new());
            let served2 = served.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (p, h, now, served) = (p.clone(), h.clone(), now.clone(), served2.clone());
                    async move {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(n, Ordering::SeqCst);
                        h.fetch_add(1, Ordering::SeqCst);
                        // Echo the body and its trailers.
                        let collected = req.into_body().collect().await.unwrap();
                        let trailer = collected
                            .trailers()
                            .and_then(|t| t.get("x-trailer"))
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let body = collected.to_bytes();
                        tokio::time::sleep(delay).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        served.notify_one();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("x-body-len", body.len())
                                .header("x-got-trailer", trailer)
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                b.max_concurrent_streams(max_streams);
                let conn = b.serve_connection(TokioIo::new(tcp), svc);
                tokio::pin!(conn);
                if goaway {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = served.notified() => conn.as_mut().graceful_shutdown(),
                    }
                }
                let _ = conn.await;
            });
        }
    });
    H2Server {
        addr,
        connections,
        peak,
        hits,
        _task: task,
    }
}

#[tokio::test]
async fn a_full_connection_makes_weir_open_another() {
    let up = spawn_h2_server(2, Duration::from_millis(1500), false).await;
    let proxy = start_proxy(&yaml("streams", up.addr, "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..6 {
        set.spawn(async move { get(addr, &format!("/{i}")).await.status });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), StatusCode::OK);
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 6);
    // 6 concurrent requests, 2 streams per connection: 3 connections, and
    // no connection ever carried more than 2 at once.
    assert_eq!(up.connections.load(Ordering::SeqCst), 3);
    assert!(up.peak.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn goaway_drains_a_connection_without_failing_later_requests() {
    // Every connection answers one request, then sends GOAWAY.
    let up = spawn_h2_server(100, Duration::from_millis(0), true).await;
    let proxy = start_proxy(&yaml("goaway", up.addr, "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let client = client();
    for i in 0..30 {
        let req = Request::get(format!("http://{addr}/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = send(&client, req).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 30);
    assert!(up.connections.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn request_bodies_and_trailers_stream_to_the_server() {
    let up = spawn_h2_server(100, Duration::from_millis(0), false).await;
    let proxy = start_proxy(&yaml("trailers", up.addr, "")).await;
    let addr = proxy.local_addr("web").unwrap();
    // An h2c client sends a streamed body with a trailer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{addr}/upload"))
        .body(body)
        .unwrap();
    let resp = tokio::spawn(sender.send_request(req));
    for _ in 0..10 {
        tx.send(Ok(http_body::Frame::data(Bytes::from(vec![b'x'; 1000]))))
            .await
            .unwrap();
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-trailer", "done".parse().unwrap());
    tx.send(Ok(http_body::Frame::trailers(trailers)))
        .await
        .unwrap();
    drop(tx);
    let resp = within(10, "upload", resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-body-len"], "10000");
    assert_eq!(resp.headers()["x-got-trailer"], "done");
}

/// A `Stream` over an mpsc receiver (no tokio-stream dependency).
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// === nginx ===

struct Nginx {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts nginx with one h2c server on `h2c_port` and one h2-over-TLS
/// server on `tls_port`; both log `$server_protocol` to `access.log`.
fn start_nginx(bin: &std::path::Path, pki: &Pki, h2c_port: u16, tls_port: u16) -> Nginx {
    let (cert, key) = pki.server("nginx", &["127.0.0.1", "localhost"]);
    let dir = pki.dir.join("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         log_format proto '$server_port $server_protocol $request_uri';\n  \
         server {{\n    listen 127.0.0.1:{h2c_port} http2;\n    access_log {d}/logs/access.log proto;\n    \
         location / {{ return 200 \"nginx-h2c\"; }}\n  }}\n  \
         server {{\n    listen 127.0.0.1:{tls_port} ssl http2;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
         access_log {d}/logs/access.log proto;\n    location / {{ return 200 \"nginx-tls\"; }}\n  }}\n}}\n",
        d = dir.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    Nginx { child, dir }
}

async fn wait_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on port {port}");
}

#[tokio::test]
async fn nginx_sees_http2_requests_over_h2c_and_tls() {
    let Some(bin) = nginx() else {
        eprintln!(
            "SKIPPED: nginx is not installed (.ci/run installs it; set NGINX=/path/to/nginx)"
        );
        return;
    };
    let pki = Pki::new("h2-nginx");
    let (h2c_port, tls_port) = (free_port(), free_port());
    let ngx = start_nginx(&bin, &pki, h2c_port, tls_port);
    wait_port(h2c_port).await;
    wait_port(tls_port).await;
    let yaml = format!(
        "workers: 1\nlisteners:\n  - name: web\n    address: 127.0.0.1:0\nroutes:\n  \
         - match: {{ path_prefix: /tls }}\n    group: ngx_tls\n  - group: ngx_h2c\n\
         groups:\n  ngx_h2c:\n    protocol: http2\n    servers:\n      - address: 127.0.0.1:{h2c_port}\n  \
         ngx_tls:\n    protocol: http2\n    tls:\n      ca: {ca}\n    servers:\n      - address: 127.0.0.1:{tls_port}\n",
        ca = pki.ca_path.display()
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let r = get(addr, "/plain").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "nginx-h2c");
    let r = get(addr, "/tls/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "nginx-tls");
    let log_path = ngx.dir.join("logs/access.log");
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        log.contains(&format!("{h2c_port} HTTP/2.0 /plain")),
        "nginx access log:\n{log}"
    );
    assert!(
        log.contains(&format!("{tls_port} HTTP/2.0 /tls/x")),
        "nginx access log:\n{log}"
    );
}

/// A raw h2 server (the h2 crate) that resets every other stream with
/// REFUSED_STREAM (RFC 9113 §8.7: not processed, safe to send again).
async fn spawn_refusing_server() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let task = tokio::spawn(async move {
        let streams = Arc::new(AtomicUsize::new(0));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (streams, s) = (streams.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    if streams.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    s.fetch_add(1, Ordering::SeqCst);
                    let resp = Response::builder().status(200).body(()).unwrap();
                    if let Ok(mut body) = respond.send_response(resp, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                }
            });
        }
    });
    (addr, served, task)
}

#[tokio::test]
async fn a_refused_stream_is_sent_again() {
    let (up, served, _task) = spawn_refusing_server().await;
    // One server, no retries: only the HTTP/2 layer's re-send can save
    // the refused requests.
    let proxy = start_proxy(&yaml("refused", up, "")).await;
    let addr = proxy.local_addr("web").unwrap();
    for i in 0..10 {
        let r = get(addr, &format!("/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), "ok");
    }
    assert_eq!(served.load(Ordering::SeqCst), 10);
}
