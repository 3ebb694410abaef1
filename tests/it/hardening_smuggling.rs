//! Request smuggling and host confusion over raw HTTP/1 bytes (issue 13).
//!
//! Table-driven: each case is the exact bytes a client writes, the status
//! weir must answer, the RFC section or CVE it comes from, and the assertion
//! that the server behind weir received nothing.

use crate::support;

use std::time::Duration;

use support::*;

/// One hostile request and what weir must do with it.
struct Case {
    name: &'static str,
    reference: &'static str,
    request: &'static str,
    status: u16,
}

const CASES: &[Case] = &[
    Case {
        name: "h2c upgrade is never forwarded (the request is answered as plain HTTP/1.1)",
        reference: "RFC 9113 §3.1; h2c smuggling (Bishop Fox 2020)",
        request: "GET /public HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        status: 0, // answered by the server, without the upgrade: see h2c_upgrade_is_stripped
    },
    Case {
        name: "two Host fields",
        reference: "RFC 9112 §3.2",
        request: "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        status: 400,
    },
    Case {
        name: "Host with userinfo",
        reference: "RFC 9112 §3.2, RFC 3986 §3.2.1",
        request: "GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n",
        status: 400,
    },
    Case {
        name: "Host with a space",
        reference: "RFC 9112 §3.2",
        request: "GET / HTTP/1.1\r\nHost: a.test b.test\r\n\r\n",
        status: 400,
    },
    Case {
        name: "Host with a bad port",
        reference: "RFC 3986 §3.2.3",
        request: "GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n",
        status: 400,
    },
    Case {
        name: "absolute-form target with userinfo",
        reference: "RFC 9112 §3.2.2",
        request: "GET http://user@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
        status: 400,
    },
    Case {
        name: "Content-Length then Transfer-Encoding",
        reference: "RFC 9112 §6.3, §11.2 (CL.TE smuggling); nginx 1.21.1",
        request: "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        status: 400,
    },
    Case {
        name: "Transfer-Encoding then Content-Length",
        reference: "RFC 9112 §6.3, §11.2 (TE.CL smuggling)",
        request: "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        status: 400,
    },
    Case {
        name: "TRACE on a route that does not list it",
        reference: "RFC 9110 §9.3.8; nginx answers 405",
        request: "TRACE / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        status: 405,
    },
    Case {
        name: "CONNECT",
        reference: "RFC 9110 §9.3.6 (weir is no forward proxy)",
        request: "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
        status: 405,
    },
    Case {
        name: "dot segments above the root",
        reference: "RFC 3986 §5.2.4; nginx answers 400",
        request: "GET /../../etc/passwd HTTP/1.1\r\nHost: a.test\r\n\r\n",
        status: 400,
    },
    Case {
        name: "encoded dot segments above the root",
        reference: "RFC 3986 §2.3, §5.2.4",
        request: "GET /a/%2e%2e/%2E%2e/etc HTTP/1.1\r\nHost: a.test\r\n\r\n",
        status: 400,
    },
    Case {
        name: "no Host in HTTP/1.1",
        reference: "RFC 9112 §3.2",
        request: "GET / HTTP/1.1\r\n\r\n",
        status: 400,
    },
    Case {
        name: "malformed chunk size before any data",
        reference: "RFC 9112 §7.1",
        request: "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        status: 0, // the head reaches the server; see hardening_body.rs
    },
];

fn yaml(upstream: &Upstream, extra_listener: &str) -> String {
    ConfigYaml::new()
        .listener_extra(extra_listener)
        .admin("")
        .routes("  - match: { path_prefix: /traced, methods: [TRACE] }\n    group: app\n  - group: app\n")
        .group("app", "", &servers_yaml(&[(upstream, 1)]))
        .build()
}

async fn metrics(proxy: &weir::Running) -> String {
    get(proxy.admin_addr().unwrap(), "/metrics").await.text()
}

#[tokio::test]
async fn hostile_requests_are_refused_and_reach_no_server() {
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    for case in CASES.iter().filter(|c| c.status != 0) {
        let response = within(10, case.name, raw_exchange(addr, case.request.as_bytes())).await;
        assert_eq!(
            raw_status(&response),
            case.status,
            "{} ({}): got\n{response}",
            case.name,
            case.reference
        );
        assert!(
            raw_body(&response).len() < 100,
            "{}: short body expected",
            case.name
        );
        assert_eq!(
            upstream.hits(),
            0,
            "{} ({}): reached the server",
            case.name,
            case.reference
        );
    }
    let m = metrics(&proxy).await;
    for (reason, n) in [
        ("duplicate_host", 1),
        ("invalid_host", 4),
        ("malformed", 2),
        ("trace", 1),
        ("connect", 1),
        ("path_above_root", 2),
        ("missing_host", 1),
    ] {
        let line =
            format!("weir_downstream_rejected_total{{listener=\"http\",reason=\"{reason}\"}} {n}");
        assert!(m.contains(&line), "missing {line:?} in\n{m}");
    }
    // The proxy still serves.
    assert_eq!(
        request_host(addr, "GET", "a.test", "/", &[]).await.status,
        200
    );
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn h2c_upgrade_is_stripped() {
    // RFC 9113 §3.1: the server must never see Upgrade: h2c or HTTP2-Settings,
    // so it can never answer 101 and open a blind HTTP/2 tunnel.
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let response = raw_exchange(
        addr,
        b"GET /public HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), 200, "{response}");
    let seen = upstream.last_seen().unwrap();
    assert!(seen.headers.get("upgrade").is_none(), "{:?}", seen.headers);
    assert!(
        seen.headers.get("http2-settings").is_none(),
        "{:?}",
        seen.headers
    );
    assert!(
        seen.headers.get("connection").is_none(),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn a_101_weir_did_not_ask_for_is_a_bad_gateway() {
    // A server that switches protocols on its own (to h2c) gets no tunnel.
    let upstream = spawn_upstream_with("switcher", |_req| async {
        let mut r = text_response(http::StatusCode::SWITCHING_PROTOCOLS, "switcher", "");
        r.headers_mut().insert("upgrade", "h2c".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r
    })
    .await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let response = raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), 502, "{response}");
}

#[tokio::test]
async fn absolute_form_authority_becomes_the_host_the_server_sees() {
    // RFC 9112 §3.2.2: the target's authority wins over Host; the server
    // must see what weir routed on, not the client's other Host.
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let response = raw_exchange(
        addr,
        b"GET http://target.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), 200, "{response}");
    let seen = upstream.last_seen().unwrap();
    assert_eq!(seen.headers["host"], "target.test");
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
}

#[tokio::test]
async fn x_real_ip_from_the_client_is_removed() {
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let r = request_host(addr, "GET", "a.test", "/", &[("x-real-ip", "10.9.9.9")]).await;
    assert_eq!(r.status, 200);
    assert!(upstream
        .last_seen()
        .unwrap()
        .headers
        .get("x-real-ip")
        .is_none());
}

#[tokio::test]
async fn trace_is_served_only_where_a_route_lists_it() {
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let response = raw_exchange(
        addr,
        b"TRACE /traced HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), 200, "{response}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn header_count_limit_is_the_same_431_for_http1() {
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(&upstream, "    max_headers: 20\n")).await;
    let addr = proxy.local_addr("http").unwrap();
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a.test\r\n");
    for i in 0..25 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let response = raw_exchange(addr, many.as_bytes()).await;
    assert_eq!(raw_status(&response), 431, "{response}");
    assert_eq!(upstream.hits(), 0);
    let mut few = String::from("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n");
    for i in 0..10 {
        few.push_str(&format!("x-h{i}: v\r\n"));
    }
    few.push_str("\r\n");
    assert_eq!(raw_status(&raw_exchange(addr, few.as_bytes()).await), 200);
    let m = metrics(&proxy).await;
    assert!(
        m.contains(
            "weir_downstream_rejected_total{listener=\"http\",reason=\"headers_too_large\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_closes_at_the_header_timeout() {
    let upstream = spawn_upstream("app").await;
    let proxy = start_proxy(&yaml(
        &upstream,
        "    request_header_timeout: 500ms\n    idle_timeout: 60s\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    // Closed by weir well before the 60 s idle timeout.
    let n = within(5, "silent connection closed", s.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let _ = Duration::ZERO;
}
