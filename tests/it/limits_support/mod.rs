//! Helpers of the `limits_*` tests: clients bound to a chosen source
//! address (127.0.0.2, 127.0.0.3), a real `redis-server` on a free port, and
//! a `/metrics` scrape.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use crate::support::Reply;

/// A TCP connection to `addr` from source address `local` (any port).
pub async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{local}:0").parse().unwrap())
        .unwrap_or_else(|e| panic!("bind {local}: {e}"));
    socket.connect(addr).await.unwrap()
}

/// An HTTP/1.1 connection from `local` to `addr`, for several requests.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens the connection.
    pub async fn open(local: &str, addr: SocketAddr) -> Conn {
        let stream = connect_from(local, addr).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http1 handshake");
        tokio::spawn(conn);
        Conn { sender }
    }

    /// Sends `GET path` with extra headers and collects the reply (5 s timeout).
    pub async fn get(&mut self, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut b = Request::get(path).header(http::header::HOST, addr.to_string());
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        self.send(b.body(Full::new(Bytes::new())).unwrap()).await
    }

    /// Sends `req` and collects the reply (5 s timeout).
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        tokio::time::timeout(Duration::from_secs(5), async {
            self.sender.ready().await.expect("connection usable");
            let resp = self.sender.send_request(req).await.expect("response");
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
        .expect("reply within 5s")
    }
}

/// One request on a fresh connection from `local`.
pub async fn get_from(local: &str, addr: SocketAddr, path: &str) -> Reply {
    Conn::open(local, addr).await.get(addr, path, &[]).await
}

/// The `/metrics` text of a running weir.
pub async fn metrics(running: &weir::Running) -> String {
    let admin = running.admin_addr().expect("admin listener configured");
    crate::support::get(admin, "/metrics").await.text()
}

/// The value of the metric line that starts with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A real `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it accepts.
    pub async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = RedisServer { port, child: None };
        r.spawn().await;
        r
    }

    /// The URL weir connects to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server; .ci/run does it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start within 10s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
