//! TLS listener: ALPN h2 and http/1.1 (and none), SNI certificate selection,
//! TLS 1.2 and 1.3, X-Forwarded-Proto https, handshake timeout. The client
//! is rustls trusting `certs-dev/ca.crt`, with hyper's connection API.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, SupportedProtocolVersion};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn yaml(up: &Upstream) -> String {
    ConfigYaml::new()
        .listener_name(Some("https"))
        .listener_extra(
            "    request_header_timeout: 500ms\n    tls:\n      certificates:\n\
             \x20       - cert: certs-dev/localhost.crt\n          key: certs-dev/localhost.key\n\
             \x20       - cert: certs-dev/example.test.crt\n          key: certs-dev/example.test.key\n",
        )
        .group("g", "", &servers_yaml(&[(up, 1)]))
        .build()
}

fn cert_der(rel: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn client_config(alpn: &[&[u8]], versions: &[&'static SupportedProtocolVersion]) -> ClientConfig {
    support::tls::client_config_with(
        support::tls::dev_roots(),
        support::tls::ClientOptions {
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            versions: Some(versions.to_vec()),
            cert: None,
        },
    )
}

async fn connect(addr: SocketAddr, config: ClientConfig, sni: &str) -> TlsStream<TcpStream> {
    support::tls::connect(addr, config, sni).await
}

fn all_versions() -> Vec<&'static SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

/// One HTTP/1.1 GET over `tls`.
async fn h1_get(tls: TlsStream<TcpStream>, host: &str, path: &str) -> Reply {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    collect(
        within(10, "h1 request", sender.send_request(req))
            .await
            .unwrap(),
    )
    .await
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

#[tokio::test]
async fn alpn_h2_negotiates_http2_and_proxies() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("https").unwrap();
    let tls = connect(
        addr,
        client_config(&[b"h2", b"http/1.1"], &all_versions()),
        "localhost",
    )
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake over TLS");
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("https://localhost:{}/h2/{i}", addr.port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = collect(
            within(10, "h2 request", sender.send_request(req))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.version, Version::HTTP_2);
        assert_eq!(r.server().as_deref(), Some("a"));
    }
    let seen = up.last_seen().unwrap();
    assert_eq!(
        seen.version,
        Version::HTTP_11,
        "upstream requests are HTTP/1.1"
    );
    assert_eq!(seen.uri.path(), "/h2/2");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["via"], "2.0 weir");
    assert_eq!(
        seen.headers["host"],
        format!("localhost:{}", addr.port()).as_str()
    );
    assert_eq!(
        seen.headers["forwarded"],
        format!(
            "for=127.0.0.1;proto=https;host=\"localhost:{}\"",
            addr.port()
        )
        .as_str()
    );
    assert_eq!(up.hits(), 3);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn alpn_http11_and_no_alpn_use_http1() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("https").unwrap();

    let tls = connect(
        addr,
        client_config(&[b"http/1.1"], &all_versions()),
        "localhost",
    )
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = h1_get(tls, "localhost", "/one").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_11);
    assert_eq!(r.server().as_deref(), Some("a"));
    let seen = up.last_seen().unwrap();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["via"], "1.1 weir");

    let tls = connect(addr, client_config(&[], &all_versions()), "localhost").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let r = h1_get(tls, "localhost", "/two").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last_seen().unwrap().uri.path(), "/two");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("https").unwrap();
    let localhost = cert_der("certs-dev/localhost.crt");
    let example = cert_der("certs-dev/example.test.crt");
    assert_ne!(localhost, example);

    // (SNI sent by the client, certificate expected). An IP address sends no
    // SNI: the first certificate is the default (its SAN has 127.0.0.1).
    let cases = [
        ("localhost", &localhost),
        ("LOCALHOST", &localhost),
        ("a.example.test", &example),
        ("example.test", &example),
        ("127.0.0.1", &localhost),
    ];
    for (sni, want) in cases {
        let tls = connect(addr, client_config(&[b"http/1.1"], &all_versions()), sni).await;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .expect("peer certificates");
        assert_eq!(&peer[0], want, "SNI {sni} got the wrong certificate");
        let r = h1_get(tls, sni, "/sni").await;
        assert_eq!(r.status, 200, "SNI {sni}");
    }
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn tls_1_2_and_1_3_both_work() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("https").unwrap();
    for (versions, want) in [
        (
            vec![&rustls::version::TLS12],
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            vec![&rustls::version::TLS13],
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (all_versions(), rustls::ProtocolVersion::TLSv1_3),
    ] {
        let tls = connect(
            addr,
            client_config(&[b"h2", b"http/1.1"], &versions),
            "localhost",
        )
        .await;
        assert_eq!(tls.get_ref().1.protocol_version(), Some(want));
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("https://localhost/v")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = collect(
            within(10, "request", sender.send_request(req))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{want:?}");
    }
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_refused() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("https").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = within(5, "close", s.read_to_end(&mut out)).await;
    assert!(
        !out.starts_with(b"HTTP/"),
        "answered plain HTTP on a TLS port"
    );
    assert_eq!(up.hits(), 0);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn silent_connection_is_closed_after_handshake_timeout() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("https").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    // request_header_timeout is 500ms and also bounds the handshake.
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent TLS connection stayed open for 4s");
    assert!(proxy.shutdown().await);
}

/// An idle HTTP/1.1 connection over TLS parks (its hyper state goes, the TLS
/// session stays: no close_notify) and serves the next request on the same
/// TLS session.
#[tokio::test]
async fn an_idle_tls_connection_parks_and_keeps_its_session() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("https").unwrap();
    let tls = connect(
        addr,
        client_config(&[b"http/1.1"], &all_versions()),
        "localhost",
    )
    .await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let get = |path: &str| {
        Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = collect(sender.send_request(get("/one")).await.unwrap()).await;
    assert_eq!(r.status, 200);
    let parked = || -> i64 {
        proxy
            .registry()
            .all_listener_stats()
            .iter()
            .map(|(_, s)| s.parked.get())
            .sum()
    };
    within(5, "the connection parks", async {
        while parked() != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    within(5, "sender ready", sender.ready()).await.unwrap();
    let r = collect(sender.send_request(get("/two")).await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.hits(), 2);
    assert!(!conn.is_finished(), "the same TLS connection served both");
    assert!(proxy.shutdown().await);
}
