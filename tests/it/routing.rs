//! Routing: host (exact, wildcard, case, port), segment-aware prefixes, matchit
//! patterns, methods, headers, first match wins, 404, path normalization
//! (the upstream still receives the original path), missing Host, h2c
//! `:authority`.

use crate::support;

use std::collections::HashMap;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

/// Groups, each with one upstream named after it.
const GROUPS: &[&str] = &[
    "exact", "wild", "repos", "profile", "users", "static", "post", "canary", "anyh", "first",
    "second",
];

const ROUTES: &str = r#"
routes:
  - name: host-exact
    match:
      host: API.example.com
    group: exact
  - name: host-wild
    match:
      host: "*.example.org"
    group: wild
  - name: repositories
    match:
      path_prefix: /repositories
    group: repos
  - name: profile
    match:
      path_prefix: /profile/
    group: profile
  - name: users
    match:
      path: /users/{id}
    group: users
  - name: static
    match:
      path: /static/{*rest}
    group: static
  - name: post-only
    match:
      path_prefix: /submit
      methods: [POST, put]
    group: post
  - name: canary
    match:
      path_prefix: /canary
      headers:
        x-canary: "true"
    group: canary
  - name: any-header
    match:
      path_prefix: /canary
      headers:
        x-debug: "*"
    group: anyh
  - name: first
    match:
      path_prefix: /first
    group: first
  - name: second
    match:
      path: /first/{id}
    group: second
"#;

struct Fixture {
    ups: HashMap<&'static str, Upstream>,
    proxy: weir::Running,
    addr: std::net::SocketAddr,
}

async fn fixture() -> Fixture {
    let mut ups = HashMap::new();
    let mut groups = String::from("groups:\n");
    for g in GROUPS {
        let up = spawn_upstream(g).await;
        groups.push_str(&format!(
            "  {g}:\n    servers:\n{}",
            servers_yaml(&[(&up, 1)])
        ));
        ups.insert(*g, up);
    }
    let yaml = format!("listeners:\n  - name: http\n    address: 127.0.0.1:0\n{ROUTES}{groups}");
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    Fixture { ups, proxy, addr }
}

impl Fixture {
    /// Which group served `method host path` (None for a 404), checking that
    /// the 404 is weir's own.
    async fn served_by(
        &self,
        method: &str,
        host: &str,
        path: &str,
        hdrs: &[(&str, &str)],
    ) -> Option<String> {
        let r = request_host(self.addr, method, host, path, hdrs).await;
        if r.status == StatusCode::NOT_FOUND {
            assert!(r.server().is_none(), "404 came from an upstream: {r:?}");
            return None;
        }
        assert_eq!(r.status, 200, "{method} {host} {path}: {r:?}");
        Some(r.server().expect("x-server"))
    }

    async fn assert_route(
        &self,
        method: &str,
        host: &str,
        path: &str,
        hdrs: &[(&str, &str)],
        want: Option<&str>,
    ) {
        let got = self.served_by(method, host, path, hdrs).await;
        assert_eq!(
            got.as_deref(),
            want,
            "{method} Host: {host} {path} {hdrs:?} went to the wrong group"
        );
    }
}

#[tokio::test]
async fn host_exact_and_wildcard_case_insensitive_port_ignored() {
    let f = within(30, "setup", fixture()).await;
    let cases: &[(&str, Option<&str>)] = &[
        ("api.example.com", Some("exact")),
        ("API.EXAMPLE.COM", Some("exact")),
        ("api.example.com:8080", Some("exact")),
        ("Api.Example.Com:1", Some("exact")),
        ("xapi.example.com", None),
        ("api.example.com.evil", None),
        ("a.example.org", Some("wild")),
        ("A.B.Example.ORG:9999", Some("wild")),
        ("example.org", None),
        ("aexample.org", None),
    ];
    for (host, want) in cases {
        f.assert_route("GET", host, "/nothing-here", &[], *want)
            .await;
    }
    // A host route matches every path: it wins over the path routes below it.
    f.assert_route(
        "GET",
        "api.example.com",
        "/repositories/1",
        &[],
        Some("exact"),
    )
    .await;
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn path_prefix_is_segment_aware() {
    let f = within(30, "setup", fixture()).await;
    let cases: &[(&str, Option<&str>)] = &[
        ("/repositories", Some("repos")),
        ("/repositories/", Some("repos")),
        ("/repositories/x", Some("repos")),
        ("/repositories/x/y?q=1", Some("repos")),
        ("/repositoriesx", None),
        ("/repo", None),
        ("/Repositories", None),
        // `path_prefix: /profile/` (trailing slash) still matches `/profile`.
        ("/profile", Some("profile")),
        ("/profile/me", Some("profile")),
        ("/profiles", None),
    ];
    for (path, want) in cases {
        f.assert_route("GET", "other.test", path, &[], *want).await;
    }
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn matchit_patterns() {
    let f = within(30, "setup", fixture()).await;
    let cases: &[(&str, Option<&str>)] = &[
        ("/users/42", Some("users")),
        ("/users/abc?x=1", Some("users")),
        ("/users/42/x", None),
        ("/users", None),
        ("/users/", None),
        ("/static/app.js", Some("static")),
        ("/static/a/b/c.css", Some("static")),
        ("/staticx/a", None),
    ];
    for (path, want) in cases {
        f.assert_route("GET", "other.test", path, &[], *want).await;
    }
    assert_eq!(f.ups["users"].last_seen().unwrap().uri.path(), "/users/abc");
    assert_eq!(f.ups["users"].last_seen().unwrap().uri.query(), Some("x=1"));
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn methods_and_headers() {
    let f = within(30, "setup", fixture()).await;
    f.assert_route("POST", "h", "/submit", &[], Some("post"))
        .await;
    // `put` in the config is upper-cased.
    f.assert_route("PUT", "h", "/submit/1", &[], Some("post"))
        .await;
    f.assert_route("GET", "h", "/submit", &[], None).await;
    f.assert_route("DELETE", "h", "/submit", &[], None).await;
    assert_eq!(f.ups["post"].hits(), 2);
    assert_eq!(f.ups["post"].last_seen().unwrap().method, "PUT");

    f.assert_route(
        "GET",
        "h",
        "/canary",
        &[("x-canary", "true")],
        Some("canary"),
    )
    .await;
    // Exact value: case-sensitive, byte for byte.
    f.assert_route("GET", "h", "/canary", &[("x-canary", "TRUE")], None)
        .await;
    f.assert_route("GET", "h", "/canary", &[("x-canary", "false")], None)
        .await;
    // "*" = present with any value (even empty).
    f.assert_route("GET", "h", "/canary", &[("x-debug", "1")], Some("anyh"))
        .await;
    f.assert_route("GET", "h", "/canary", &[("X-Debug", "")], Some("anyh"))
        .await;
    f.assert_route("GET", "h", "/canary", &[], None).await;
    // Both hold: the first route listed wins.
    f.assert_route(
        "GET",
        "h",
        "/canary/x",
        &[("x-debug", "1"), ("x-canary", "true")],
        Some("canary"),
    )
    .await;
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn first_match_wins() {
    let f = within(30, "setup", fixture()).await;
    // `/first/{id}` also matches, but the prefix route comes first.
    f.assert_route("GET", "h", "/first/1", &[], Some("first"))
        .await;
    f.assert_route("GET", "h", "/first", &[], Some("first"))
        .await;
    assert_eq!(f.ups["second"].hits(), 0);
    assert_eq!(f.ups["first"].hits(), 2);
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn no_match_is_a_short_plain_404() {
    let f = within(30, "setup", fixture()).await;
    let r = request_host(f.addr, "GET", "other.test", "/nowhere", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.server().is_none());
    let ct = r.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    assert!(
        !r.body.is_empty() && r.body.len() < 100,
        "body {:?}",
        r.text()
    );
    assert!(r.text().contains("404"), "body {:?}", r.text());
    let total: usize = f.ups.values().map(Upstream::hits).sum();
    assert_eq!(total, 0, "no upstream may see an unrouted request");
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn normalized_path_routes_and_original_is_forwarded() {
    let f = within(30, "setup", fixture()).await;
    let cases: &[(&str, &str)] = &[
        ("/profile/../repositories", "repos"),
        ("/profile/../repositories/7", "repos"),
        ("/%70rofile", "profile"),
        ("/%70rofile/me", "profile"),
        ("//profile", "profile"),
        ("//profile//me", "profile"),
        ("/x/%2e%2e/profile/me", "profile"),
        ("/repositories/./../profile", "profile"),
        ("/./users/9", "users"),
    ];
    for (path, want) in cases {
        let r = request_host(f.addr, "GET", "other.test", path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(
            r.server().as_deref(),
            Some(*want),
            "{path} reached the wrong group"
        );
        let seen = f.ups[want].last_seen().unwrap();
        assert_eq!(
            seen.uri.path(),
            *path,
            "upstream must receive the original path"
        );
    }
    // An encoded slash is not a separator: `/repositories%2F1` is not `/repositories/1`.
    f.assert_route("GET", "h", "/repositories%2F1", &[], None)
        .await;
    // `..` above the root is refused (400, as nginx; issue 13), not forwarded raw.
    let r = request_host(f.addr, "GET", "h", "/../../profile", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.server().is_none());
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn http11_without_host_is_400() {
    let f = within(30, "setup", fixture()).await;
    let resp = raw_exchange(
        f.addr,
        b"GET /profile HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    assert_eq!(f.ups["profile"].hits(), 0);
    // The same request with a Host is fine.
    let resp = raw_exchange(
        f.addr,
        b"GET /profile HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn h2c_prior_knowledge_routes_by_authority() {
    let f = within(30, "setup", fixture()).await;
    let req = |uri: &str| {
        Request::get(uri)
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = h2c_request(f.addr, req("http://API.example.com:8080/anything")).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.server().as_deref(), Some("exact"));
    let seen = f.ups["exact"].last_seen().unwrap();
    // Upstream requests are HTTP/1.1 whatever the downstream protocol, with
    // the authority as Host.
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["host"], "API.example.com:8080");
    assert_eq!(seen.uri.path(), "/anything");

    let r = h2c_request(f.addr, req("http://z.example.org/p")).await;
    assert_eq!(r.server().as_deref(), Some("wild"));
    let r = h2c_request(f.addr, req("http://other.test/profile/me")).await;
    assert_eq!(r.server().as_deref(), Some("profile"));
    let r = h2c_request(f.addr, req("http://other.test/nowhere")).await;
    assert_eq!(r.status, 404);
    assert!(f.proxy.shutdown().await);
}
