//! The RFC 9111 response cache end to end: a real hyper upstream that
//! counts requests per path, weir started on a YAML config with `cache`,
//! real hyper clients. Waits use the real clock (`Age` is in seconds), at
//! most a few seconds per test; the tests run in parallel.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use support::*;

/// Requests the origin served, by path.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<HashMap<String, usize>>>);

impl Counts {
    fn bump(&self, path: &str) -> usize {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(path.to_string()).or_default();
        *n += 1;
        *n
    }
    fn get(&self, path: &str) -> usize {
        self.0.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn reply(cc: &str) -> http::response::Builder {
    let mut b = Response::builder().status(200);
    if !cc.is_empty() {
        b = b.header("cache-control", cc);
    }
    b
}

/// The origin: what each path answers.
async fn origin(req: Request<hyper::body::Incoming>, counts: Counts) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let n = counts.bump(&path);
    let h = req.headers();
    let full =
        |b: http::response::Builder, body: String| b.body(Full::new(Bytes::from(body))).unwrap();
    match path.as_str() {
        "/nostore" => full(reply("no-store"), format!("v{n}")),
        "/private" => full(reply("private, max-age=60"), format!("v{n}")),
        "/cookie" => full(
            reply("max-age=60").header("set-cookie", "session=1"),
            format!("v{n}"),
        ),
        "/public" => full(reply("public, max-age=60"), format!("v{n}")),
        "/nofresh" => full(reply(""), format!("v{n}")),
        "/expires" => {
            let later =
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
            full(reply("").header("expires", later), format!("v{n}"))
        }
        "/vary" => {
            let lang = h
                .get("accept-language")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            full(
                reply("max-age=60").header("vary", "Accept-Language"),
                format!("{lang}-{n}"),
            )
        }
        "/varystar" => full(reply("max-age=60").header("vary", "*"), format!("v{n}")),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            full(reply("max-age=60"), format!("v{n}"))
        }
        "/etag" => {
            if h.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                Response::builder()
                    .status(304)
                    .header("cache-control", "max-age=2")
                    .header("etag", "\"v1\"")
                    .header("x-refreshed", n.to_string())
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            } else {
                full(reply("max-age=2").header("etag", "\"v1\""), format!("v{n}"))
            }
        }
        "/sie" => full(reply("max-age=2, stale-if-error=60"), format!("v{n}")),
        "/sie500" if n > 1 => Response::builder()
            .status(500)
            .body(Full::new(Bytes::from("boom")))
            .unwrap(),
        "/sie500" => full(reply("max-age=2, stale-if-error=60"), format!("v{n}")),
        "/mustreval" if n > 1 => Response::builder()
            .status(500)
            .body(Full::new(Bytes::from("boom")))
            .unwrap(),
        "/mustreval" => full(
            reply("max-age=2, must-revalidate, stale-if-error=60"),
            format!("v{n}"),
        ),
        "/swr" => full(
            reply("max-age=2, stale-while-revalidate=30"),
            format!("v{n}"),
        ),
        "/big" => full(reply("max-age=60"), "x".repeat(100 * 1024)),
        p if p.starts_with("/fill/") => full(reply("max-age=60"), "f".repeat(20 * 1024)),
        // /fresh, /static/*, /other and anything else.
        _ => full(reply("max-age=60"), format!("v{n}")),
    }
}

struct Setup {
    counts: Counts,
    upstream: Upstream,
    proxy: weir::Running,
    addr: SocketAddr,
}

async fn setup(top: &str, route_cache: &str) -> Setup {
    let counts = Counts::default();
    let c = counts.clone();
    let upstream = spawn_upstream_with("origin", move |req| origin(req, c.clone())).await;
    let yaml = format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n{top}routes:\n  - group: g\n    cache: {route_cache}\ngroups:\n  g:\n    servers:\n      - address: {}\n",
        upstream.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    Setup {
        counts,
        upstream,
        proxy,
        addr,
    }
}

async fn get_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    request_host(addr, method, "cache.test", path, headers).await
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

fn age(r: &Reply) -> u64 {
    header(r, "age")
        .parse()
        .unwrap_or_else(|_| panic!("no Age: {:?}", r.headers))
}

async fn admin_post(proxy: &weir::Running, path: &str, token: Option<&str>) -> Reply {
    let admin = proxy.admin_addr().unwrap();
    let mut b = Request::post(format!("http://{admin}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(&client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn max_age_response_is_fetched_once_and_age_grows() {
    let s = setup("", "true").await;
    let first = get_with(s.addr, "GET", "/fresh", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "v1");
    assert!(
        header(&first, "cache-status").contains("stored"),
        "{:?}",
        first.headers
    );
    let second = get_with(s.addr, "GET", "/fresh", &[]).await;
    assert_eq!(second.text(), "v1");
    assert!(header(&second, "cache-status").starts_with("weir; hit"));
    let age_before = age(&second);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = get_with(s.addr, "GET", "/fresh", &[]).await;
    assert_eq!(third.text(), "v1");
    assert!(
        age(&third) > age_before,
        "Age grows: {} then {}",
        age_before,
        age(&third)
    );
    assert!(age(&third) >= 1);
    // HEAD is answered from the stored GET response, without a body.
    let head = get_with(s.addr, "HEAD", "/fresh", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(header(&head, "cache-status").starts_with("weir; hit"));
    // Expires works as max-age does.
    get_with(s.addr, "GET", "/expires", &[]).await;
    assert_eq!(get_with(s.addr, "GET", "/expires", &[]).await.text(), "v1");
    assert_eq!(s.counts.get("/fresh"), 1);
    assert_eq!(s.counts.get("/expires"), 1);
    // A POST invalidates (RFC 9111 §4.4).
    get_with(s.addr, "POST", "/fresh", &[]).await;
    assert_eq!(get_with(s.addr, "GET", "/fresh", &[]).await.text(), "v3");
    let stats = &s.proxy.registry().cache.stats;
    assert!(stats.hits.get() >= 3);
    assert!(stats.stored.get() >= 2);
}

#[tokio::test]
async fn uncacheable_responses_are_not_stored() {
    let s = setup("", "true").await;
    // (path, request headers, upstream requests after two GETs, why)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], usize, &'a str);
    let cases: &[Case] = &[
        ("/nostore", &[], 2, "RFC 9111 §5.2.2.5 no-store"),
        (
            "/private",
            &[],
            2,
            "RFC 9111 §5.2.2.7 private: not in a shared cache",
        ),
        (
            "/cookie",
            &[],
            2,
            "Set-Cookie: weir never stores it (as nginx)",
        ),
        (
            "/fresh",
            &[("authorization", "Bearer x")],
            2,
            "RFC 9111 §3.5 Authorization",
        ),
        (
            "/public",
            &[("authorization", "Bearer x")],
            1,
            "RFC 9111 §3.5: public allows it",
        ),
        (
            "/nofresh",
            &[],
            2,
            "RFC 9111 §4.2.2: no freshness information, no default_ttl",
        ),
        ("/varystar", &[], 2, "RFC 9111 §4.1: Vary: * never matches"),
        (
            "/other",
            &[("cache-control", "no-store")],
            2,
            "RFC 9111 §5.2.1.5 request no-store",
        ),
    ];
    for (path, headers, want, why) in cases {
        for _ in 0..2 {
            let r = get_with(s.addr, "GET", path, headers).await;
            assert_eq!(r.status, 200, "{path}");
            if *want == 2 {
                let status = header(&r, "cache-status");
                assert!(status.starts_with("weir; fwd="), "{path}: {:?}", r.headers);
                assert!(!status.contains("stored"), "{path}: {:?}", r.headers);
            }
        }
        assert_eq!(s.counts.get(path), *want, "{path}: {why}");
    }
    let r = get_with(s.addr, "GET", "/private", &[]).await;
    assert!(
        header(&r, "cache-status").contains("detail=private"),
        "{:?}",
        r.headers
    );
}

#[tokio::test]
async fn default_ttl_keeps_responses_without_freshness() {
    let s = setup("", "{ default_ttl: 60s }").await;
    assert_eq!(get_with(s.addr, "GET", "/nofresh", &[]).await.text(), "v1");
    assert_eq!(get_with(s.addr, "GET", "/nofresh", &[]).await.text(), "v1");
    assert_eq!(s.counts.get("/nofresh"), 1);
}

#[tokio::test]
async fn vary_separates_variants() {
    let s = setup("", "true").await;
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(get_with(s.addr, "GET", "/vary", &en).await.text(), "en-1");
    assert_eq!(get_with(s.addr, "GET", "/vary", &fr).await.text(), "fr-2");
    assert_eq!(get_with(s.addr, "GET", "/vary", &en).await.text(), "en-1");
    let r = get_with(s.addr, "GET", "/vary", &fr).await;
    assert_eq!(r.text(), "fr-2");
    assert!(header(&r, "cache-status").starts_with("weir; hit"));
    let none = get_with(s.addr, "GET", "/vary", &[]).await;
    assert_eq!(none.text(), "-3");
    assert!(
        header(&none, "cache-status").contains("fwd=vary-miss"),
        "{:?}",
        none.headers
    );
    assert_eq!(s.counts.get("/vary"), 3);
}

#[tokio::test]
async fn purge_empties_the_cache_all_or_by_prefix() {
    let s = setup("", "true").await;
    for p in ["/static/a", "/static/b", "/other"] {
        get_with(s.addr, "GET", p, &[]).await;
        get_with(s.addr, "GET", p, &[]).await;
        assert_eq!(s.counts.get(p), 1);
    }
    let r = admin_post(&s.proxy, "/cache/purge?prefix=/static", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("purged 2"), "{}", r.text());
    assert_eq!(get_with(s.addr, "GET", "/static/a", &[]).await.text(), "v2");
    assert_eq!(get_with(s.addr, "GET", "/other", &[]).await.text(), "v1");
    let r = admin_post(&s.proxy, "/cache/purge", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(get_with(s.addr, "GET", "/other", &[]).await.text(), "v2");
    assert_eq!(get_with(s.addr, "GET", "/static/b", &[]).await.text(), "v2");
}

#[tokio::test]
async fn purge_needs_the_admin_token() {
    let counts = Counts::default();
    let c = counts.clone();
    let upstream = spawn_upstream_with("origin", move |req| origin(req, c.clone())).await;
    let yaml = format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n  token: secret-admin-token\nroutes:\n  - group: g\n    cache: true\ngroups:\n  g:\n    servers:\n      - address: {}\n",
        upstream.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    get_with(addr, "GET", "/fresh", &[]).await;
    assert_eq!(admin_post(&proxy, "/cache/purge", None).await.status, 401);
    assert_eq!(get_with(addr, "GET", "/fresh", &[]).await.text(), "v1");
    let r = admin_post(&proxy, "/cache/purge", Some("secret-admin-token")).await;
    assert_eq!(r.status, 200);
    assert_eq!(get_with(addr, "GET", "/fresh", &[]).await.text(), "v2");
}

#[tokio::test]
async fn concurrent_misses_are_coalesced() {
    let s = setup("", "true").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            get_with(addr, "GET", "/slow", &[]).await
        }));
    }
    let mut collapsed = 0;
    for t in tasks {
        let r = within(10, "coalesced GET", t).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "v1");
        collapsed += usize::from(header(&r, "cache-status").contains("collapsed"));
    }
    assert!(
        s.counts.get("/slow") <= 2,
        "upstream requests: {}",
        s.counts.get("/slow")
    );
    assert!(collapsed >= 1, "at least one request waited for another");
    assert!(s.proxy.registry().cache.stats.coalesced.get() >= 1);
}

#[tokio::test]
async fn stale_entry_is_revalidated_with_its_etag() {
    let s = setup("", "true").await;
    assert_eq!(get_with(s.addr, "GET", "/etag", &[]).await.text(), "v1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get_with(s.addr, "GET", "/etag", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "v1", "the stored body, refreshed by the 304");
    assert!(
        header(&r, "cache-status").contains("fwd-status=304"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        header(&r, "x-refreshed"),
        "2",
        "the 304's headers replace the stored ones"
    );
    let seen = s.upstream.last_seen().unwrap();
    assert_eq!(seen.headers["if-none-match"], "\"v1\"");
    // Fresh again: no upstream request.
    let r = get_with(s.addr, "GET", "/etag", &[]).await;
    assert!(header(&r, "cache-status").starts_with("weir; hit"));
    assert_eq!(s.counts.get("/etag"), 2);
    // A client's If-None-Match is answered from the cache.
    let r = get_with(s.addr, "GET", "/etag", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, 304);
    // Request no-cache: validated with the server first (RFC 9111 §5.2.1.4).
    let r = get_with(s.addr, "GET", "/etag", &[("cache-control", "no-cache")]).await;
    assert_eq!(r.text(), "v1");
    assert_eq!(s.counts.get("/etag"), 3);
    assert!(s.proxy.registry().cache.stats.revalidated.get() >= 2);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_server_fails() {
    let s = setup("", "true").await;
    assert_eq!(get_with(s.addr, "GET", "/sie500", &[]).await.text(), "v1");
    assert_eq!(get_with(s.addr, "GET", "/sie", &[]).await.text(), "v1");
    assert_eq!(
        get_with(s.addr, "GET", "/mustreval", &[]).await.text(),
        "v1"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The server answers 500: the stale response instead.
    let r = get_with(s.addr, "GET", "/sie500", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "v1");
    assert!(
        header(&r, "cache-status").contains("detail=stale-if-error"),
        "{:?}",
        r.headers
    );
    assert!(header(&r, "cache-status").contains("fwd-status=500"));
    // must-revalidate forbids it (RFC 9111 §5.2.2.2).
    assert_eq!(get_with(s.addr, "GET", "/mustreval", &[]).await.status, 500);
    // The server is down (connection refused): stale too.
    s.upstream.stop();
    let r = get_with(s.addr, "GET", "/sie", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "v1");
    assert!(header(&r, "cache-status").contains("stale-if-error"));
    assert!(s.proxy.registry().cache.stats.stale.get() >= 2);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes() {
    let s = setup("", "true").await;
    assert_eq!(get_with(s.addr, "GET", "/swr", &[]).await.text(), "v1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get_with(s.addr, "GET", "/swr", &[]).await;
    assert_eq!(r.text(), "v1", "stale at once");
    assert!(
        header(&r, "cache-status").contains("stale-while-revalidate"),
        "{:?}",
        r.headers
    );
    within(5, "background refresh", async {
        while s.counts.get("/swr") < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The refreshed response is stored once its body is read.
    let mut text = String::new();
    for _ in 0..50 {
        text = get_with(s.addr, "GET", "/swr", &[]).await.text();
        if text == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(text, "v2");
    assert_eq!(s.counts.get("/swr"), 2);
}

#[tokio::test]
async fn large_bodies_stream_through_uncached() {
    let s = setup(
        "cache:\n  max_size: 1MiB\n  max_object_size: 64KiB\n",
        "true",
    )
    .await;
    for _ in 0..2 {
        let r = get_with(s.addr, "GET", "/big", &[]).await;
        assert_eq!(r.body.len(), 100 * 1024);
        assert!(
            header(&r, "cache-status").contains("too-large"),
            "{:?}",
            r.headers
        );
    }
    assert_eq!(s.counts.get("/big"), 2);
    assert!(s.proxy.registry().cache.stats.too_large.get() >= 2);
}

#[tokio::test]
async fn max_size_bounds_the_memory() {
    let s = setup(
        "cache:\n  max_size: 256KiB\n  max_object_size: 32KiB\n",
        "true",
    )
    .await;
    for i in 0..40 {
        let r = get_with(s.addr, "GET", &format!("/fill/{i}"), &[]).await;
        assert_eq!(r.body.len(), 20 * 1024);
    }
    let cache = s.proxy.registry().cache.current().unwrap();
    assert!(
        cache.store.weight() <= 256 * 1024,
        "weight {}",
        cache.store.weight()
    );
    assert!(cache.store.len() < 40, "entries {}", cache.store.len());
    assert!(
        cache.store.len() >= 5,
        "it still caches: {}",
        cache.store.len()
    );
    // /metrics shows it.
    let admin = s.proxy.admin_addr().unwrap();
    let m = get(admin, "/metrics").await.text();
    assert!(m.contains("weir_cache_bytes "), "{m}");
    assert!(m.contains("weir_cache_stored_total "), "{m}");
}

#[tokio::test]
async fn only_if_cached_without_a_stored_response_is_504() {
    let s = setup("", "true").await;
    let r = get_with(
        s.addr,
        "GET",
        "/fresh",
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(r.status, 504);
    assert_eq!(s.counts.get("/fresh"), 0);
}

#[tokio::test]
async fn reload_keeps_the_cache() {
    let s = setup("", "true").await;
    get_with(s.addr, "GET", "/fresh", &[]).await;
    let yaml = format!(
        "listeners:\n  - name: http\n    address: {}\nadmin:\n  address: 127.0.0.1:0\nroutes:\n  - group: g\n    cache: true\ngroups:\n  g:\n    servers:\n      - address: {}\n",
        s.addr, s.upstream.addr
    );
    s.proxy.apply(config(&yaml)).await.unwrap();
    assert_eq!(get_with(s.addr, "GET", "/fresh", &[]).await.text(), "v1");
    assert_eq!(s.counts.get("/fresh"), 1);
    // New sizes: a new, empty cache.
    let resized = yaml.replace("routes:", "cache:\n  max_size: 1MiB\nroutes:");
    s.proxy.apply(config(&resized)).await.unwrap();
    assert_eq!(get_with(s.addr, "GET", "/fresh", &[]).await.text(), "v2");
    // No caching route: the cache is gone.
    let off = yaml.replace("    cache: true\n", "");
    s.proxy.apply(config(&off)).await.unwrap();
    assert!(s.proxy.registry().cache.current().is_none());
    assert_eq!(get_with(s.addr, "GET", "/fresh", &[]).await.text(), "v3");
}

#[tokio::test]
async fn routes_do_not_share_entries() {
    // One URL, two routes (by header) to two groups: each has its own entry.
    let main = spawn_upstream("main").await;
    let canary = spawn_upstream_with("canary", |_req| async {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(Full::new(Bytes::from("canary")))
            .unwrap()
    })
    .await;
    let main_cached = spawn_upstream_with("main", |_req| async {
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(Full::new(Bytes::from("main")))
            .unwrap()
    })
    .await;
    drop(main);
    let yaml = format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - match: {{ headers: {{ x-canary: \"1\" }} }}\n    group: canary\n    cache: true\n  - group: main\n    cache: true\ngroups:\n  canary:\n    servers:\n      - address: {}\n  main:\n    servers:\n      - address: {}\n",
        canary.addr, main_cached.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    assert_eq!(get_with(addr, "GET", "/x", &[]).await.text(), "main");
    assert_eq!(
        get_with(addr, "GET", "/x", &[("x-canary", "1")])
            .await
            .text(),
        "canary"
    );
    assert_eq!(get_with(addr, "GET", "/x", &[]).await.text(), "main");
    assert_eq!(
        get_with(addr, "GET", "/x", &[("x-canary", "1")])
            .await
            .text(),
        "canary"
    );
    assert_eq!(main_cached.hits(), 1);
    assert_eq!(canary.hits(), 1);
}

#[test]
fn config_errors_name_the_key() {
    let base = "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\n    cache: true\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9\n";
    let bad = |extra: &str| {
        weir::config::load_str(&format!("{extra}{base}"), std::path::Path::new("t.yaml"))
            .unwrap_err()
            .to_string()
    };
    assert!(bad("cache:\n  max_size: 10XB\n").contains("cache.max_size"));
    assert!(bad("cache:\n  max_size: 1MiB\n  max_object_size: 2MiB\n")
        .contains("cache.max_object_size"));
    assert!(bad("cache:\n  lock_timeout: soon\n").contains("cache.lock_timeout"));
    assert!(bad("cache:\n  size: 1MiB\n").contains("size"));
    let ok = weir::config::load_str(
        &format!("cache:\n  max_size: 64MiB\n  max_object_size: 1MiB\n{base}"),
        std::path::Path::new("t.yaml"),
    )
    .unwrap();
    assert_eq!(ok.cache.config.unwrap().max_size, 64 << 20);
    let defaults = weir::config::load_str(base, std::path::Path::new("t.yaml")).unwrap();
    assert_eq!(defaults.cache.config.unwrap().max_size, 256 << 20);
    let ttl = base.replace("cache: true", "cache: { default_ttl: 60s }");
    let c = weir::config::load_str(&ttl, std::path::Path::new("t.yaml")).unwrap();
    assert_eq!(
        c.cache.routes[0].unwrap().default_ttl,
        Some(Duration::from_secs(60))
    );
    let bad_ttl = base.replace("cache: true", "cache: { default_ttl: never }");
    let e = weir::config::load_str(&bad_ttl, std::path::Path::new("t.yaml")).unwrap_err();
    assert!(e.to_string().contains("routes[0].cache.default_ttl"), "{e}");
    let off = base.replace("cache: true", "cache: false");
    let c = weir::config::load_str(&off, std::path::Path::new("t.yaml")).unwrap();
    assert!(c.cache.config.is_none());
}

#[tokio::test]
async fn the_access_log_shows_the_cache_status() {
    let dir = std::env::temp_dir().join(format!("weir-cache-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let s = setup(
        &format!("access_log:\n  format: json\n  path: {}\n", log.display()),
        "true",
    )
    .await;
    get_with(s.addr, "GET", "/fresh", &[]).await;
    get_with(s.addr, "GET", "/fresh", &[]).await;
    let lines = within(5, "two access lines", async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().count() >= 2 {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let caches: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["cache"].to_string())
        .collect();
    assert!(caches.contains(&"\"stored\"".to_string()), "{lines}");
    assert!(caches.contains(&"\"hit\"".to_string()), "{lines}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A raw HTTP/1.1 origin answering every request with a chunked body of
/// `chunks` × 10 KiB (`max-age=60`), pausing 500 ms after the first chunk;
/// `rest_sent` turns true just before the rest goes out.
async fn chunked_origin(
    chunks: usize,
) -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let rest_sent = Arc::new(AtomicBool::new(false));
    let (r, f) = (requests.clone(), rest_sent.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (r, f) = (r.clone(), f.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    r.fetch_add(1, Ordering::SeqCst);
                    let chunk = format!("2800\r\n{}\r\n", "c".repeat(10240));
                    let head = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n";
                    if s.write_all(format!("{head}{chunk}").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    f.store(true, Ordering::SeqCst);
                    let rest = chunk.repeat(chunks - 1) + "0\r\n\r\n";
                    if s.write_all(rest.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, requests, rest_sent)
}

async fn chunked_setup(
    chunks: usize,
) -> (
    weir::Running,
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let (origin, requests, rest_sent) = chunked_origin(chunks).await;
    let yaml = format!(
        "cache:\n  max_size: 1MiB\n  max_object_size: 64KiB\nlisteners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n    cache: true\ngroups:\n  g:\n    servers:\n      - address: {origin}\n"
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    (proxy, addr, requests, rest_sent)
}

#[tokio::test]
async fn a_streamed_body_is_teed_without_delay_and_stored_when_it_fits() {
    use http_body_util::BodyExt;
    use std::sync::atomic::Ordering;
    let (_proxy, addr, requests, rest_sent) = chunked_setup(3).await;
    let req = Request::get(format!("http://{addr}/c"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within(10, "response", client().request(req)).await.unwrap();
    assert!(resp.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("stored"));
    let mut body = resp.into_body();
    let first = within(10, "first frame", body.frame())
        .await
        .unwrap()
        .unwrap();
    assert!(!first.data_ref().unwrap().is_empty());
    assert!(
        !rest_sent.load(Ordering::SeqCst),
        "the first bytes reach the client before the server sent the rest"
    );
    let rest = within(10, "rest", body.collect()).await.unwrap().to_bytes();
    assert_eq!(first.data_ref().unwrap().len() + rest.len(), 3 * 10240);
    // Stored at the end of the stream: the next GET is a hit.
    let mut r = get(addr, "/c").await;
    for _ in 0..20 {
        if header(&r, "cache-status").starts_with("weir; hit") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = get(addr, "/c").await;
    }
    assert!(
        header(&r, "cache-status").starts_with("weir; hit"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body.len(), 3 * 10240);
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_streamed_body_past_max_object_size_is_not_stored() {
    use std::sync::atomic::Ordering;
    let (proxy, addr, requests, _) = chunked_setup(10).await;
    for _ in 0..2 {
        let r = get(addr, "/big").await;
        assert_eq!(r.body.len(), 10 * 10240, "the client gets it all");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert!(proxy.registry().cache.stats.too_large.get() >= 2);
}

#[tokio::test]
async fn hits_over_h2c() {
    let s = setup("", "true").await;
    let req = || {
        Request::get(format!("http://{}/fresh", s.addr))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let first = h2c_request(s.addr, req()).await;
    assert_eq!(first.text(), "v1");
    let second = h2c_request(s.addr, req()).await;
    assert_eq!(second.version, http::Version::HTTP_2);
    assert_eq!(second.text(), "v1");
    assert!(header(&second, "cache-status").starts_with("weir; hit"));
    assert_eq!(s.counts.get("/fresh"), 1);
}
