//! PROXY protocol in (`listeners[].proxy_protocol`) and out
//! (`groups.*.proxy_protocol`) with raw TCP sockets: the header's client
//! reaches X-Forwarded-For and the allow/deny rules, a connection without it
//! is closed, v2 LOCAL keeps the real peer, a TLS listener reads the header
//! before the handshake, and a raw upstream reads the v1/v2 header weir sends.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::config::edge::ProxyVersion;
use weir::upstream::proxy_protocol::encode;

/// An upstream answering with the X-Forwarded-For and Forwarded it got.
async fn xff_upstream() -> Upstream {
    spawn_upstream_with("xff", |req| async move {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default()
        };
        let body = format!("xff={} fwd={}", h("x-forwarded-for"), h("forwarded"));
        text_response(StatusCode::OK, "xff", &body)
    })
    .await
}

fn yaml(up: &Upstream, extra_listener: &str, extra_route: &str) -> String {
    ConfigYaml::new()
        .listener_name(None)
        .listener_extra(&format!(
            "    proxy_protocol: true\n    proxy_protocol_timeout: 300ms\n{extra_listener}"
        ))
        .routes(&format!("  - group: g\n{extra_route}"))
        .group("g", "", &servers_yaml(&[(up, 1)]))
        .build()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";

/// Sends `header` + a GET and returns the whole answer (empty when closed).
async fn exchange(addr: SocketAddr, header: &[u8]) -> String {
    let mut req = header.to_vec();
    req.extend_from_slice(GET);
    raw_exchange(addr, &req).await
}

#[tokio::test]
async fn v1_header_sets_the_client_address() {
    let up = xff_upstream().await;
    let proxy = start_proxy(&yaml(&up, "", "")).await;
    let addr = proxy.local_addrs()[0].1;
    let out = exchange(addr, b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\n").await;
    assert_eq!(raw_status(&out), 200, "{out}");
    assert!(raw_body(&out).contains("xff=203.0.113.9 "), "{out}");
    assert!(raw_body(&out).contains("for=203.0.113.9"), "{out}");
    // IPv6 in v1.
    let out = exchange(addr, b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n").await;
    assert!(raw_body(&out).contains("xff=2001:db8::7"), "{out}");
    // The header split over two writes still works.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.").await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.write_all(b"10 198.51.100.1 1 2\r\n").await.unwrap();
    s.write_all(GET).await.unwrap();
    let mut out = String::new();
    within(10, "split header", s.read_to_string(&mut out))
        .await
        .unwrap();
    assert!(out.contains("xff=203.0.113.10"), "{out}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn v2_header_sets_the_client_address_and_local_keeps_the_peer() {
    let up = xff_upstream().await;
    let proxy = start_proxy(&yaml(&up, "", "")).await;
    let addr = proxy.local_addrs()[0].1;
    let header = encode(
        ProxyVersion::V2,
        "192.0.2.44:40000".parse().unwrap(),
        "198.51.100.1:443".parse().unwrap(),
    );
    let out = exchange(addr, &header).await;
    assert_eq!(raw_status(&out), 200, "{out}");
    assert!(raw_body(&out).contains("xff=192.0.2.44 "), "{out}");
    let header = encode(
        ProxyVersion::V2,
        "[2001:db8::99]:1".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    let out = exchange(addr, &header).await;
    assert!(raw_body(&out).contains("xff=2001:db8::99"), "{out}");
    // LOCAL command (the balancer's own health check): the real peer.
    let mut local = weir::upstream::proxy_protocol::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let out = exchange(addr, &local).await;
    assert_eq!(raw_status(&out), 200, "{out}");
    assert!(raw_body(&out).contains("xff=127.0.0.1 "), "{out}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_connection_without_the_header_is_closed() {
    let up = xff_upstream().await;
    let proxy = start_proxy(&format!(
        "admin:\n  address: 127.0.0.1:0\n{}",
        yaml(&up, "", "")
    ))
    .await;
    let addr = proxy.local_addrs()[0].1;
    // Plain HTTP: not a PROXY header, closed without an answer.
    let out = exchange(addr, b"").await;
    assert_eq!(out, "", "answered without a PROXY header");
    // A silent connection is closed at the deadline (300ms here).
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = within(10, "silent connection closed", s.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    // A malformed v1 header.
    let out = exchange(addr, b"PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n").await;
    assert_eq!(out, "");
    assert_eq!(up.hits(), 0);
    let metrics = get(proxy.admin_addr().unwrap(), "/metrics").await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("weir_listener_proxy_protocol_errors_total"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.ends_with(" 3"), "{line}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn deny_rules_and_per_ip_limits_see_the_header_address() {
    let up = xff_upstream().await;
    let proxy = start_proxy(&yaml(
        &up,
        "    max_connections_per_ip: 1\n",
        "    deny: [203.0.113.0/24]\n",
    ))
    .await;
    let addr = proxy.local_addrs()[0].1;
    let out = exchange(addr, b"PROXY TCP4 203.0.113.5 198.51.100.1 1 2\r\n").await;
    assert_eq!(raw_status(&out), 403, "{out}");
    let out = exchange(addr, b"PROXY TCP4 192.0.2.5 198.51.100.1 1 2\r\n").await;
    assert_eq!(raw_status(&out), 200, "{out}");
    // One open connection from 192.0.2.6 (by its header): a second one with
    // the same header address is closed, one from another address is served.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"PROXY TCP4 192.0.2.6 198.51.100.1 1 2\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = exchange(addr, b"PROXY TCP4 192.0.2.6 198.51.100.1 3 2\r\n").await;
    assert_eq!(out, "", "second connection from the same PROXY address");
    let out = exchange(addr, b"PROXY TCP4 192.0.2.7 198.51.100.1 3 2\r\n").await;
    assert_eq!(raw_status(&out), 200, "{out}");
    drop(first);
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_listener_reads_the_header_before_the_handshake() {
    let up = xff_upstream().await;
    let listener = "    tls:\n      certificates:\n        - cert: certs-dev/localhost.crt\n          key: certs-dev/localhost.key\n";
    let proxy = start_proxy(&yaml(&up, listener, "")).await;
    let addr = proxy.local_addrs()[0].1;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.77 198.51.100.1 5555 443\r\n")
        .await
        .unwrap();
    let config = support::tls::client_config(support::tls::dev_roots(), &[]);
    let mut tls = support::tls::handshake(tcp, config, "localhost")
        .await
        .unwrap();
    tls.write_all(GET).await.unwrap();
    let mut out = String::new();
    let _ = within(10, "TLS answer", tls.read_to_string(&mut out)).await;
    assert_eq!(raw_status(&out), 200, "{out}");
    assert!(raw_body(&out).contains("xff=203.0.113.77 "), "{out}");
    proxy.shutdown().await;
}

/// A raw upstream: reads the PROXY header (v1 line or v2 binary) and the
/// request head, answers with the header's bytes (hex for v2) in the body.
async fn raw_proxy_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = if buf.starts_with(b"PROXY ") {
                    let end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
                    String::from_utf8_lossy(&buf[..end]).into_owned()
                } else if buf.starts_with(&weir::upstream::proxy_protocol::V2_SIGNATURE) {
                    let len = 16 + u16::from_be_bytes([buf[14], buf[15]]) as usize;
                    buf[..len].iter().map(|b| format!("{b:02x}")).collect()
                } else {
                    "none".to_string()
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

async fn send_through(version: &str, client_header: &[u8]) -> (String, SocketAddr) {
    let (up, task) = raw_proxy_upstream().await;
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:0\n    proxy_protocol: true\nroutes:\n  - group: g\n\
         groups:\n  g:\n    proxy_protocol: {version}\n    servers:\n      - address: {up}\n"
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addrs()[0].1;
    let out = exchange(addr, client_header).await;
    proxy.shutdown().await;
    task.abort();
    (out, addr)
}

#[tokio::test]
async fn v1_out_names_the_client_to_a_raw_upstream() {
    let (out, _) = send_through("v1", b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\n").await;
    assert_eq!(raw_status(&out), 200, "{out}");
    assert_eq!(
        raw_body(&out),
        "PROXY TCP4 203.0.113.9 198.51.100.1 5555 443",
        "{out}"
    );
}

#[tokio::test]
async fn v2_out_names_the_client_to_a_raw_upstream() {
    let (out, _) = send_through("v2", b"PROXY TCP4 203.0.113.9 198.51.100.1 5555 443\r\n").await;
    assert_eq!(raw_status(&out), 200, "{out}");
    let want: String = encode(
        ProxyVersion::V2,
        "203.0.113.9:5555".parse().unwrap(),
        "198.51.100.1:443".parse().unwrap(),
    )
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    assert_eq!(raw_body(&out), want, "{out}");
}

#[tokio::test]
async fn v1_out_without_proxy_in_uses_the_tcp_peer() {
    let (up, task) = raw_proxy_upstream().await;
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n    proxy_protocol: v1\n    servers:\n      - address: {up}\n"
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addrs()[0].1;
    // Two requests from two connections: each upstream connection carries
    // its own client's header (connections are not pooled across clients).
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let port = s.local_addr().unwrap().port();
        s.write_all(GET).await.unwrap();
        let mut out = String::new();
        within(10, "answer", s.read_to_string(&mut out))
            .await
            .unwrap();
        assert_eq!(
            raw_body(&out),
            format!("PROXY TCP4 127.0.0.1 127.0.0.1 {port} {}", addr.port()),
            "{out}"
        );
    }
    proxy.shutdown().await;
    task.abort();
}
