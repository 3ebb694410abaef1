//! Proxy headers (RFC 9110 §7.6): what the upstream receives (Via,
//! X-Forwarded-*, Forwarded, Host kept, hop-by-hop removed) and what the
//! client receives back (hop-by-hop removed, Via added).
//!
//! Requests with hop-by-hop fields are written by hand on a raw TCP socket, as
//! hyper's client would drop or rewrite some of them.

use crate::support;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use support::*;

fn yaml(up: &Upstream) -> String {
    ConfigYaml::new()
        .group("g", "", &servers_yaml(&[(up, 1)]))
        .build()
}

fn all(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn forwarding_headers_over_http1() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("http").unwrap();
    let req = "GET /p?q=1 HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-For: 1.2.3.4\r\n\
               X-Forwarded-Proto: https\r\nX-Forwarded-Host: spoofed.test\r\nX-Other: kept\r\n\
               Connection: close\r\n\r\n";
    let resp = within(15, "request", raw_exchange(addr, req.as_bytes())).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let seen = up.last_seen().unwrap();
    let h = &seen.headers;
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/p?q=1");
    assert_eq!(all(h, "via"), ["1.1 weir"]);
    assert_eq!(all(h, "x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(
        all(h, "x-forwarded-proto"),
        ["http"],
        "client spoof must be overwritten"
    );
    assert_eq!(all(h, "x-forwarded-host"), ["api.test"]);
    assert_eq!(
        all(h, "forwarded"),
        ["for=127.0.0.1;proto=http;host=api.test"]
    );
    assert_eq!(all(h, "host"), ["api.test"], "the client's Host is kept");
    assert_eq!(all(h, "x-other"), ["kept"]);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn forwarding_headers_with_a_port_in_host_and_no_client_xff() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("http").unwrap();
    // hyper's client sets Host to the URI's authority: 127.0.0.1:PORT.
    let r = get(addr, "/x").await;
    assert_eq!(r.status, 200);
    let h = up.last_seen().unwrap().headers;
    let host = addr.to_string();
    assert_eq!(all(&h, "host"), [host.as_str()]);
    assert_eq!(all(&h, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all(&h, "x-forwarded-host"), [host.as_str()]);
    // `:` is not a token character: RFC 7239 quotes the value.
    assert_eq!(
        all(&h, "forwarded"),
        [format!("for=127.0.0.1;proto=http;host=\"{host}\"")]
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn several_x_forwarded_for_fields_are_joined() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("http").unwrap();
    let req = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\
               X-Forwarded-For: 5.6.7.8, 9.9.9.9\r\nForwarded: for=1.2.3.4\r\n\
               Via: 1.0 edge\r\nConnection: close\r\n\r\n";
    let resp = raw_exchange(addr, req.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let h = up.last_seen().unwrap().headers;
    assert_eq!(
        all(&h, "x-forwarded-for"),
        ["1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1"]
    );
    // Forwarded and Via are lists: this hop is appended.
    assert_eq!(
        all(&h, "forwarded"),
        ["for=1.2.3.4", "for=127.0.0.1;proto=http;host=h"]
    );
    assert_eq!(all(&h, "via"), ["1.0 edge", "1.1 weir"]);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn h2c_downstream_gets_via_2_0_and_host_from_authority() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("http").unwrap();
    let req = Request::get("http://svc.test:8080/h2")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-proto", "https")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = h2c_request(addr, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, http::Version::HTTP_2);
    let seen = up.last_seen().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_11);
    let h = &seen.headers;
    assert_eq!(all(h, "via"), ["2.0 weir"]);
    assert_eq!(all(h, "host"), ["svc.test:8080"]);
    assert_eq!(all(h, "x-forwarded-host"), ["svc.test:8080"]);
    assert_eq!(all(h, "x-forwarded-for"), ["10.0.0.1, 127.0.0.1"]);
    assert_eq!(all(h, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        all(h, "forwarded"),
        ["for=127.0.0.1;proto=http;host=\"svc.test:8080\""]
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn request_hop_by_hop_fields_are_removed() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("http").unwrap();
    let req = "GET /hop HTTP/1.1\r\nHost: h\r\n\
               Connection: close, X-Secret, x-other-secret\r\n\
               X-Secret: 1\r\nX-Other-Secret: 2\r\nX-Keep: 3\r\n\
               Keep-Alive: timeout=5, max=100\r\nTE: trailers\r\nTrailer: x-checksum\r\n\
               Upgrade: websocket\r\nProxy-Connection: keep-alive\r\n\r\n";
    let resp = within(15, "request", raw_exchange(addr, req.as_bytes())).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let h = up.last_seen().unwrap().headers;
    for name in [
        "x-secret",
        "x-other-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(
            !h.contains_key(name),
            "hop-by-hop {name} reached the upstream: {h:?}"
        );
    }
    // The upstream connection's own Connection header (if hyper adds one) must
    // not carry the client's tokens.
    for v in all(&h, "connection") {
        assert!(
            !v.to_ascii_lowercase().contains("secret"),
            "Connection: {v}"
        );
    }
    assert_eq!(all(&h, "x-keep"), ["3"]);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn response_hop_by_hop_fields_are_removed_and_via_added() {
    let up = spawn_upstream_with("a", |_req| async {
        let mut r = text_response(StatusCode::OK, "a", "hello");
        let h = r.headers_mut();
        h.insert("connection", "x-up-secret".parse().unwrap());
        h.insert("x-up-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("trailer", "x-checksum".parse().unwrap());
        h.insert("x-up-keep", "2".parse().unwrap());
        r
    })
    .await;
    let proxy = start_proxy(&yaml(&up)).await;
    let addr = proxy.local_addr("http").unwrap();
    let resp = within(
        15,
        "request",
        raw_exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let h = raw_headers(&resp);
    let get = |n: &str| -> Vec<&str> {
        h.iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for name in ["x-up-secret", "keep-alive", "proxy-connection", "trailer"] {
        assert!(
            get(name).is_empty(),
            "hop-by-hop {name} reached the client:\n{resp}"
        );
    }
    for v in get("connection") {
        assert!(!v.contains("x-up-secret"), "Connection: {v}");
    }
    assert_eq!(get("x-up-keep"), ["2"]);
    assert_eq!(get("x-server"), ["a"]);
    assert_eq!(get("via"), ["1.1 weir"]);
    assert!(raw_body(&resp).ends_with("hello"), "{resp}");
    assert!(proxy.shutdown().await);
}
