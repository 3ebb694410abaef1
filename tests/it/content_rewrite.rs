//! Path rewrites (`routes[].rewrite`, issue 16 point 4): `prefix` replaces
//! the route's `match.path_prefix` (Envoy's `prefix_rewrite`), `regex` +
//! `replace` with `$1` groups (Traefik's `ReplacePathRegex`); the query is
//! kept; the access log shows both the received and the upstream path. The
//! test upstream echoes the target it received.

use crate::support;

use std::time::Instant;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::*;

async fn echo() -> Upstream {
    spawn_upstream_with("echo", |req: Request<Incoming>| async move {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut r = http::Response::new(Full::new(Bytes::from(target)));
        *r.status_mut() = StatusCode::OK;
        r
    })
    .await
}

const ROUTES: &str = "  - name: api
    match: { path_prefix: /api }
    group: g
    rewrite: { prefix: /v2 }
  - name: strip
    match: { path_prefix: /strip/ }
    group: g
    rewrite: { prefix: / }
  - name: legacy
    match: { path_prefix: /old }
    group: g
    rewrite: { regex: \"^/old/(.*)$\", replace: \"/new/$1\" }
  - name: users
    match: { path: \"/u/{id}\" }
    group: g
    rewrite: { regex: \"^/u/(?P<id>[0-9]+)$\", replace: \"/users/${id}/profile\" }
  - name: plain
    group: g
";

#[tokio::test]
async fn prefix_and_regex_rewrites_reach_the_server_as_configured() {
    let up = echo().await;
    let dir = TempDir::new("rewrite");
    let log = dir.path().join("access.log");
    let weir = start_proxy(&format!(
        "access_log:\n  format: json\n  path: {}\nlisteners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n{ROUTES}\
         groups:\n  g:\n    servers:\n      - address: {}\n",
        log.display(),
        up.addr
    ))
    .await;
    let addr = weir.local_addr("http").unwrap();
    let cases = [
        ("/api/users?a=1&b=2", "/v2/users?a=1&b=2"),
        ("/api", "/v2"),
        ("/api/", "/v2/"),
        ("/apix", "/apix"),
        ("/strip/a/b?q", "/a/b?q"),
        ("/strip", "/"),
        ("/old/x/y?z=1", "/new/x/y?z=1"),
        ("/u/42?tab=1", "/users/42/profile?tab=1"),
        ("/u/abc", "/u/abc"),
        ("/plain/path?k=v", "/plain/path?k=v"),
        // The normalized path is what is rewritten.
        ("/api/../api//users", "/v2/users"),
    ];
    for (sent, want) in cases {
        let r = get(addr, sent).await;
        assert_eq!(r.status, 200, "{sent}");
        assert_eq!(r.text(), want, "{sent} reached the server as");
    }

    // The access log shows both paths for a rewritten request. Lines reach
    // the file at each worker's flush tick: wait for both.
    let mut text = String::new();
    support::wait_until(5, "access lines for /api/users and /plain/path", || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        let both = text.contains("/api/users?a=1") && text.contains("/plain/path");
        std::future::ready(both)
    })
    .await;
    let line = text
        .lines()
        .find(|l| l.contains("/api/users?a=1"))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"], "/api/users?a=1&b=2");
    assert_eq!(v["upstream_path"], "/v2/users?a=1&b=2");
    assert_eq!(v["route"], "api");
    let plain = text
        .lines()
        .find(|l| l.contains("/plain/path"))
        .expect("plain line");
    let v: serde_json::Value = serde_json::from_str(plain).unwrap();
    assert!(v["upstream_path"].is_null(), "{plain}");
    weir.shutdown().await;
}

#[test]
fn text_access_line_shows_the_upstream_path_only_when_rewritten() {
    use weir::proxy::access_log::{AccessRecord, Format};
    let mut r = AccessRecord::new(
        Instant::now(),
        "127.0.0.1:5000".parse().unwrap(),
        http::Method::GET,
        "/api/x?q=1".parse().unwrap(),
    );
    let mut out = Vec::new();
    r.write_line(Format::Text, &mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    assert!(line.contains(" path=/api/x?q=1 status="), "{line}");
    r.upstream_path = Some("/v2/x?q=1".into());
    let mut out = Vec::new();
    r.write_line(Format::Text, &mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    assert!(
        line.contains(" path=/api/x?q=1 upstream_path=/v2/x?q=1 status="),
        "{line}"
    );
}
