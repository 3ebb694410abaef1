//! gRPC through weir: a real tonic server (hand-written prost messages and
//! service, no protoc) behind an `http2` group, a real tonic client in
//! front, over h2c and over the TLS listener. Unary, server streaming (200
//! messages), client streaming, bidirectional streaming in lockstep, a
//! NOT_FOUND status with its message, weir's
//! own errors as gRPC statuses (UNAVAILABLE, UNIMPLEMENTED,
//! DEADLINE_EXCEEDED by `grpc-timeout`), and `health_check.type: grpc`.

use crate::support;
use crate::upstream_support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tonic::body::Body as GrpcBody;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use upstream_support::*;

// === messages (protobuf, by hand) ===

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    count: u32,
    #[prost(uint32, tag = "3")]
    sleep_ms: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    index: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Reply<T> = Result<tonic::Response<T>, Status>;

/// A unary or client-streaming handler as a tonic service.
struct Handler<F>(F);

impl<M1, M2, F> tonic::server::UnaryService<M1> for Handler<F>
where
    F: FnMut(tonic::Request<M1>) -> BoxFut<Reply<M2>>,
{
    type Response = M2;
    type Future = BoxFut<Reply<M2>>;
    fn call(&mut self, request: tonic::Request<M1>) -> Self::Future {
        (self.0)(request)
    }
}

impl<M1, M2, F> tonic::server::ClientStreamingService<M1> for Handler<F>
where
    F: FnMut(tonic::Request<tonic::Streaming<M1>>) -> BoxFut<Reply<M2>>,
{
    type Response = M2;
    type Future = BoxFut<Reply<M2>>;
    fn call(&mut self, request: tonic::Request<tonic::Streaming<M1>>) -> Self::Future {
        (self.0)(request)
    }
}

type ReplyStream = Pin<Box<dyn futures_util::Stream<Item = Result<EchoReply, Status>> + Send>>;

struct Streamer;

impl tonic::server::ServerStreamingService<EchoRequest> for Streamer {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFut<Reply<ReplyStream>>;
    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let req = request.into_inner();
        Box::pin(async move {
            let s = futures_util::stream::iter((0..req.count).map(move |i| {
                Ok(EchoReply {
                    message: req.message.clone(),
                    index: i,
                })
            }));
            Ok(tonic::Response::new(Box::pin(s) as ReplyStream))
        })
    }
}

fn echo_unary(r: tonic::Request<EchoRequest>) -> BoxFut<Reply<EchoReply>> {
    Box::pin(async move {
        let r = r.into_inner();
        tokio::time::sleep(Duration::from_millis(r.sleep_ms.into())).await;
        Ok(tonic::Response::new(EchoReply {
            message: format!("echo: {}", r.message),
            index: 0,
        }))
    })
}

fn echo_fail(r: tonic::Request<EchoRequest>) -> BoxFut<Reply<EchoReply>> {
    let m = r.into_inner().message;
    Box::pin(async move { Err(Status::not_found(format!("no such thing: {m}"))) })
}

fn echo_collect(r: tonic::Request<tonic::Streaming<EchoRequest>>) -> BoxFut<Reply<EchoReply>> {
    Box::pin(async move {
        let mut s = r.into_inner();
        let mut n = 0;
        let mut joined = String::new();
        while let Some(m) = s.message().await? {
            n += 1;
            joined.push_str(&m.message);
        }
        Ok(tonic::Response::new(EchoReply {
            message: joined,
            index: n,
        }))
    })
}

fn health_check(r: tonic::Request<HealthCheckRequest>) -> BoxFut<Reply<HealthCheckResponse>> {
    let service = r.into_inner().service;
    Box::pin(async move {
        let status = match service.as_str() {
            "" | "test.Echo" => 1,
            _ => 2,
        };
        Ok(tonic::Response::new(HealthCheckResponse { status }))
    })
}

/// Bidirectional: one reply per message, as each arrives.
struct Ping;

impl tonic::server::StreamingService<EchoRequest> for Ping {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFut<Reply<ReplyStream>>;
    fn call(&mut self, request: tonic::Request<tonic::Streaming<EchoRequest>>) -> Self::Future {
        use futures_util::StreamExt;
        let incoming = request.into_inner();
        Box::pin(async move {
            let s = incoming.enumerate().map(|(i, m)| {
                m.map(|m| EchoReply {
                    message: format!("pong {}", m.message),
                    index: i as u32,
                })
            });
            Ok(tonic::Response::new(Box::pin(s) as ReplyStream))
        })
    }
}

/// The gRPC server: `test.Echo/{Unary,Fail,ServerStream,ClientStream}` and
/// `grpc.health.v1.Health/Check` (SERVING for "" and "test.Echo").
struct GrpcServer {
    addr: SocketAddr,
    health_checks: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn route(req: http::Request<Incoming>, health: Arc<AtomicUsize>) -> http::Response<GrpcBody> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/test.Echo/Unary" => {
            let mut g = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            g.unary(Handler(echo_unary), req).await
        }
        "/test.Echo/Fail" => {
            let mut g = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            g.unary(Handler(echo_fail), req).await
        }
        "/test.Echo/ServerStream" => {
            let mut g = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            g.server_streaming(Streamer, req).await
        }
        "/test.Echo/ClientStream" => {
            let mut g = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            g.client_streaming(Handler(echo_collect), req).await
        }
        "/test.Echo/Ping" => {
            let mut g = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            g.streaming(Ping, req).await
        }
        "/grpc.health.v1.Health/Check" => {
            health.fetch_add(1, Ordering::SeqCst);
            let mut g = tonic::server::Grpc::new(ProstCodec::<
                HealthCheckResponse,
                HealthCheckRequest,
            >::default());
            g.unary(Handler(health_check), req).await
        }
        _ => Status::unimplemented("no such method").into_http(),
    }
}

async fn spawn_grpc_server() -> GrpcServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health_checks = Arc::new(AtomicUsize::new(0));
    let hc = health_checks.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let hc = hc.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let hc = hc.clone();
                    async move { Ok::<_, Infallible>(route(req, hc).await) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    GrpcServer {
        addr,
        health_checks,
        _task: task,
    }
}

// === the client: tonic's generic Grpc over one hyper HTTP/2 connection ===

#[derive(Clone)]
struct H2(SendRequest<GrpcBody>);

impl tower_service::Service<http::Request<GrpcBody>> for H2 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFut<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<GrpcBody>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

type Client = tonic::client::Grpc<H2>;

async fn client_over<T>(io: T, origin: &str) -> Client
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake with weir");
    tokio::spawn(conn);
    tonic::client::Grpc::with_origin(H2(sender), origin.parse().unwrap())
}

async fn h2c_client(addr: SocketAddr) -> Client {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    client_over(tcp, &format!("http://{addr}")).await
}

/// A client over TLS to weir's listener (certs-dev/localhost.crt, trusted
/// through certs-dev/ca.crt), ALPN h2.
async fn tls_client(addr: SocketAddr) -> Client {
    let config = support::tls::client_config(support::tls::dev_roots(), &[b"h2"]);
    let tls = support::tls::connect(addr, config, "localhost").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    client_over(tls, &format!("https://localhost:{}", addr.port())).await
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms: 0,
    }
}

async fn unary(c: &mut Client, path: &'static str, req: EchoRequest) -> Result<EchoReply, Status> {
    c.ready().await.unwrap();
    let r = tonic::Request::new(req);
    within(
        10,
        path,
        c.unary(r, PathAndQuery::from_static(path), ProstCodec::default()),
    )
    .await
    .map(tonic::Response::into_inner)
}

fn weir_yaml(server: SocketAddr, extra_groups: &str) -> String {
    format!(
        "listeners:\n  - name: h2c\n    address: 127.0.0.1:0\n  - name: tls\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n\
         \x20       - cert: certs-dev/localhost.crt\n          key: certs-dev/localhost.key\n\
         routes:\n  - match: {{ path_prefix: /test.Echo }}\n    group: echo\n  - match: {{ path_prefix: /dead.Svc }}\n    group: dead\n\
         groups:\n  echo:\n    protocol: http2\n    servers:\n      - address: {server}\n\
         \x20 dead:\n    protocol: http2\n    servers:\n      - address: 127.0.0.1:{dead}\n{extra_groups}",
        dead = free_port()
    )
}

/// Unary, a 200-message server stream, client streaming and a NOT_FOUND
/// status pass through unchanged.
async fn calls_pass_through(c: &mut Client) {
    let r = unary(c, "/test.Echo/Unary", echo("hi")).await.unwrap();
    assert_eq!(r.message, "echo: hi");

    let e = unary(c, "/test.Echo/Fail", echo("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(e.message(), "no such thing: x");

    c.ready().await.unwrap();
    let req = tonic::Request::new(EchoRequest {
        message: "s".into(),
        count: 200,
        sleep_ms: 0,
    });
    let mut stream = within(
        10,
        "server stream",
        c.server_streaming(
            req,
            PathAndQuery::from_static("/test.Echo/ServerStream"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        ),
    )
    .await
    .unwrap()
    .into_inner();
    let mut n = 0;
    while let Some(m) = within(10, "stream message", stream.message())
        .await
        .unwrap()
    {
        assert_eq!(m.index, n);
        n += 1;
    }
    assert_eq!(n, 200);

    c.ready().await.unwrap();
    let msgs = futures_util::stream::iter((0..50).map(|i| echo(&format!("{}", i % 10))));
    let r = within(
        10,
        "client stream",
        c.client_streaming(
            tonic::Request::new(msgs),
            PathAndQuery::from_static("/test.Echo/ClientStream"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        ),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(r.index, 50);
    assert_eq!(r.message.len(), 50);

    // Bidirectional, in lockstep: each reply arrives before the next
    // message is sent, so weir forwards both directions at once.
    c.ready().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let outgoing = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    tx.send(echo("0")).await.unwrap();
    let mut replies = within(
        10,
        "bidi call",
        c.streaming(
            tonic::Request::new(outgoing),
            PathAndQuery::from_static("/test.Echo/Ping"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        ),
    )
    .await
    .unwrap()
    .into_inner();
    for i in 0..10u32 {
        let m = within(10, "bidi reply", replies.message())
            .await
            .unwrap()
            .expect("a reply");
        assert_eq!(m.message, format!("pong {i}"));
        assert_eq!(m.index, i);
        if i < 9 {
            tx.send(echo(&(i + 1).to_string())).await.unwrap();
        }
    }
    drop(tx);
    assert!(within(10, "bidi end", replies.message())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn grpc_calls_pass_through_weir_over_h2c_and_tls() {
    let server = spawn_grpc_server().await;
    let proxy = start_proxy(&weir_yaml(server.addr, "")).await;
    let mut c = h2c_client(proxy.local_addr("h2c").unwrap()).await;
    calls_pass_through(&mut c).await;
    let mut c = tls_client(proxy.local_addr("tls").unwrap()).await;
    calls_pass_through(&mut c).await;
}

#[tokio::test]
async fn weir_answers_its_own_errors_as_grpc_statuses() {
    let server = spawn_grpc_server().await;
    let proxy = start_proxy(&weir_yaml(
        server.addr,
        &format!(
            "  slow:\n    protocol: http2\n    timeouts:\n      response: 60s\n    servers:\n      - address: {}\n",
            server.addr
        ),
    ))
    .await;
    for listener in ["h2c", "tls"] {
        let addr = proxy.local_addr(listener).unwrap();
        let mut c = if listener == "h2c" {
            h2c_client(addr).await
        } else {
            tls_client(addr).await
        };
        // A dead group (connect refused): UNAVAILABLE.
        let e = unary(&mut c, "/dead.Svc/Call", echo("x"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{listener}: {e:?}");
        assert!(e.message().contains("upstream connect error"), "{e:?}");
        // No route: UNIMPLEMENTED.
        let e = unary(&mut c, "/nowhere.Svc/Call", echo("x"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented, "{listener}: {e:?}");
    }
    // grpc-timeout shorter than timeouts.response: DEADLINE_EXCEEDED from weir.
    let mut c = h2c_client(proxy.local_addr("h2c").unwrap()).await;
    c.ready().await.unwrap();
    let mut req = tonic::Request::new(EchoRequest {
        message: "slow".into(),
        count: 0,
        sleep_ms: 3000,
    });
    req.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let e = within(
        10,
        "deadline",
        c.unary(
            req,
            PathAndQuery::from_static("/test.Echo/Unary"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert_eq!(e.message(), "upstream request timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn grpc_health_checks_mark_servers_up_and_down() {
    let server = spawn_grpc_server().await;
    let hc = |service: &str| {
        format!(
            "    health_check:\n      type: grpc\n      service: {service}\n      interval: 100ms\n      timeout: 1s\n      \
             healthy_threshold: 1\n      unhealthy_threshold: 1\n"
        )
    };
    let yaml = format!(
        "listeners:\n  - name: h2c\n    address: 127.0.0.1:0\nroutes:\n  - match: {{ path_prefix: /test.Echo/Unary }}\n    group: good\n  \
         - match: {{ path_prefix: /test.Echo }}\n    group: bad\ngroups:\n  good:\n    protocol: http2\n{}    servers:\n      - address: {a}\n  \
         bad:\n    protocol: http2\n{}    servers:\n      - address: {a}\n",
        hc("test.Echo"),
        hc("other.Service"),
        a = server.addr
    );
    let proxy = start_proxy(&yaml).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.health_checks.load(Ordering::SeqCst) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "no grpc health check arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = h2c_client(proxy.local_addr("h2c").unwrap()).await;
    // SERVING for test.Echo: up.
    let r = unary(&mut c, "/test.Echo/Unary", echo("up")).await.unwrap();
    assert_eq!(r.message, "echo: up");
    // NOT_SERVING for other.Service: down, so weir has no server: UNAVAILABLE.
    let e = unary(&mut c, "/test.Echo/Fail", echo("x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(e.message(), "no healthy upstream");
}

#[test]
fn grpc_health_check_config() {
    let load = |hc: &str| {
        let y = format!(
            "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    health_check:\n{hc}    servers:\n      - address: 127.0.0.1:1\n"
        );
        weir::config::load_str(&y, &root().join("t.yaml"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(load("      type: grpc\n").is_ok());
    assert!(load("      type: grpc\n      service: a.B\n").is_ok());
    let e = load("      type: http\n      service: a.B\n").unwrap_err();
    assert!(
        e.contains("groups.g.health_check.service: only for type grpc"),
        "{e}"
    );
    let e = load("      type: grpc\n      path: /x\n").unwrap_err();
    assert!(
        e.contains("groups.g.health_check.path: only for type http"),
        "{e}"
    );
}
