//! Test support: real upstream servers on 127.0.0.1 port 0, weir started
//! in-process on a YAML config, and real hyper clients.
//!
//! Every test module uses what it needs (`use crate::support::...`): YAML
//! configs ([`yaml::ConfigYaml`]), temp dirs removed on drop ([`TempDir`]),
//! polling ([`wait_until`]), TLS clients ([`tls`]), the log capture.

pub mod fs;
pub mod tls;
pub mod yaml;

pub use fs::{TempDir, TempFile};
pub use yaml::{server, server_id, ConfigYaml};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The boxed future an upstream handler returns.
pub type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
/// An upstream request handler.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
}

/// A real HTTP/1.1 + h2c server on 127.0.0.1, counting requests and TCP
/// connections, remembering the last request, and able to stop and restart
/// on the same port.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    pub last: Arc<Mutex<Option<Seen>>>,
    handler: Handler,
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl Upstream {
    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The last request this upstream received.
    pub fn last_seen(&self) -> Option<Seen> {
        self.last.lock().unwrap().clone()
    }

    /// Stops accepting and drops every open connection (like a killed process).
    pub fn stop(&self) {
        if let Some(mut set) = self.tasks.lock().unwrap().take() {
            set.abort_all();
            // Dropping the JoinSet aborts too; make sure sockets close now.
            drop(set);
        }
    }

    /// Starts serving again on the same address.
    pub async fn restart(&self) {
        self.stop();
        // The port was ours a moment ago; retry briefly while the kernel lets go.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        let set = serve(
            listener,
            self.handler.clone(),
            self.hits.clone(),
            self.connections.clone(),
            self.last.clone(),
        );
        *self.tasks.lock().unwrap() = Some(set);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    listener: TcpListener,
    handler: Handler,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<Seen>>>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let conns: Arc<Mutex<JoinSet<()>>> = Arc::new(Mutex::new(JoinSet::new()));
    let conns_for_accept = conns.clone();
    set.spawn(async move {
        // Holding `conns` here means aborting this task drops every connection task too.
        let _keep = conns.clone();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let hits = hits.clone();
            let last = last.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                hits.fetch_add(1, Ordering::SeqCst);
                *last.lock().unwrap() = Some(Seen {
                    method: req.method().clone(),
                    uri: req.uri().clone(),
                    version: req.version(),
                    headers: req.headers().clone(),
                });
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            conns_for_accept.lock().unwrap().spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    set
}

/// An upstream whose every answer is `200` with body NAME and header `x-server: NAME`.
pub async fn spawn_upstream(name: &str) -> Upstream {
    let n = name.to_string();
    spawn_upstream_with(name, move |_req| {
        let n = n.clone();
        async move { text_response(StatusCode::OK, &n, &n) }
    })
    .await
}

/// An upstream with a custom handler.
pub async fn spawn_upstream_with<F, Fut>(name: &str, handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |req| Box::pin(handler(req)) as HandlerFuture);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(None));
    let set = serve(
        listener,
        handler.clone(),
        hits.clone(),
        connections.clone(),
        last.clone(),
    );
    Upstream {
        name: name.to_string(),
        addr,
        hits,
        connections,
        last,
        handler,
        tasks: Mutex::new(Some(set)),
    }
}

/// A response with `x-server: server` and a text body.
pub fn text_response(status: StatusCode, server: &str, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-server", server.parse().unwrap());
    resp
}

/// The crate root; config paths in test YAML (e.g. `certs-dev/...`) resolve against it.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses and validates `yaml` as if it were `<crate root>/test.yaml`.
pub fn config(yaml: &str) -> weir::Config {
    match weir::config::load_str(yaml, &root().join("test.yaml")) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid:\n{e}\n---\n{yaml}"),
    }
}

/// Starts weir on `yaml` (listeners should use port 0).
pub async fn start_proxy(yaml: &str) -> weir::Running {
    capture_logs();
    weir::Proxy::new(config(yaml))
        .start()
        .await
        .expect("proxy starts")
}

/// Largest captured log kept in memory, in bytes: the oldest half is dropped
/// past it (every test of the binary logs into the one buffer).
const LOG_CAPTURE_MAX: usize = 64 * 1024 * 1024;

fn capture() -> &'static Mutex<Vec<u8>> {
    static BUF: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUF.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("RUST_LOG").is_some() {
            eprint!("{}", String::from_utf8_lossy(buf));
        }
        let mut b = capture().lock().unwrap();
        if b.len() + buf.len() > LOG_CAPTURE_MAX {
            let cut = b.len() / 2;
            b.drain(..cut);
        }
        b.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the log capture as the process-wide subscriber (once): every line
/// weir logs at INFO and above (or at `RUST_LOG`, which also prints it), from
/// every test of this binary. Tests read it with [`logs`] and [`wait_log`] and
/// look for lines naming their own group or server.
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// The captured log so far (see [`capture_logs`]).
pub fn logs() -> String {
    let buf = capture().lock().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Waits up to 5 s for a captured log line containing every one of `parts`.
pub async fn wait_log(parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(line) = logs().lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        if std::time::Instant::now() > deadline {
            panic!("no log line with {parts:?}; captured:\n{}", logs());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs a test that measures this process (VmRSS) alone, in a child process
/// of this test binary, since every other test of the binary runs on threads
/// of the same process. Returns `true` in the child, where the test body
/// runs; in the parent it waits for the child, fails the test if the child
/// failed or did not run exactly that test, and returns `false`.
///
/// `module` is `module_path!()` of the caller, `name` its function name.
pub fn isolated(module: &str, name: &str) -> bool {
    if std::env::var_os("WEIR_TEST_ISOLATED").is_some() {
        return true;
    }
    let path = module.split_once("::").map_or(module, |(_, rest)| rest);
    let test = format!("{path}::{name}");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([test.as_str(), "--exact", "--test-threads=1", "--nocapture"])
        .env("WEIR_TEST_ISOLATED", "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "{test} failed in its own process");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test} did not run in its own process"
    );
    false
}

/// Polls `cond` every 50 ms until it holds; fails naming `what` after `secs`
/// seconds.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A YAML `servers:` list for `upstreams`, with optional weights.
pub fn servers_yaml(upstreams: &[(&Upstream, u32)]) -> String {
    let mut s = String::new();
    for (u, w) in upstreams {
        s.push_str(&format!(
            "      - address: {}\n        weight: {}\n        id: {}\n",
            u.addr, w, u.name
        ));
    }
    s
}

/// A plain HTTP/1.1 client (keep-alive pool).
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A plain h2c (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A collected response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `x-server` header (which test upstream answered).
    pub fn server(&self) -> Option<String> {
        self.headers
            .get("x-server")
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// Sends `req` and collects the whole response (10 s timeout).
pub async fn send(client: &Client<HttpConnector, Full<Bytes>>, req: Request<Full<Bytes>>) -> Reply {
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("response within 10s")
        .expect("request succeeds");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// GET `http://addr{path}` with a fresh client.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client(), req).await
}

/// Path of a file in the crate root.
pub fn path(rel: &str) -> PathBuf {
    root().join(Path::new(rel))
}

// ---------------------------------------------------------------------------
// Helpers for raw sockets, explicit Host headers and HTTP/2 prior knowledge.

/// Fails the test when `fut` takes longer than `secs` seconds.
pub async fn within<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {secs}s"),
    }
}

/// Writes `request` on a fresh TCP connection to `addr`, then reads until the
/// server closes the connection (at most 10 s). Returns the bytes read as text.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "server did not close the connection within 10s; got so far:\n{}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.x response (`HTTP/1.1 404 Not Found` → 404).
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// The header section of a raw HTTP/1.x response, lower-cased names →
/// values, in order (repeated fields appear repeatedly).
pub fn raw_headers(response: &str) -> Vec<(String, String)> {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// The body of a raw HTTP/1.x response (everything after the blank line;
/// chunked framing is not decoded).
pub fn raw_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `method` `http://addr{path}` with an explicit `Host` header, on a fresh client.
pub async fn request_host(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(http::header::HOST, host);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    send(&client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Sends `req` as HTTP/2 with prior knowledge on a fresh TCP connection to
/// `addr` (hyper's connection API, so the request's `:authority` can name any
/// host while the socket goes to `addr`). 10 s timeout.
pub async fn h2c_request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    within(10, "h2c request", async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.expect("h2c request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    })
    .await
}
