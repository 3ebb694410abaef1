//! Local rate limits end to end: a real upstream, weir in-process, clients
//! from 127.0.0.2/127.0.0.3; the 429 answer, its headers and metric; keys by
//! client address, header, absent key and JWT claim; and the bounded store
//! under a flood of a million keys.

use crate::limits_support;
use crate::support;

use std::time::{Duration, Instant};

use limits_support::{metric, metrics, Conn};
use support::{server, spawn_upstream, start_proxy, ConfigYaml};

fn yaml(upstream: std::net::SocketAddr, policies: &str, routes: &str) -> String {
    ConfigYaml::new()
        .top(&format!("rate_limits:\n{policies}"))
        .admin("")
        .routes(routes)
        .group("g", "", &server(upstream))
        .build()
}

#[tokio::test]
async fn ten_per_second_burst_ten_against_sixty_requests() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(
        up.addr,
        "  per_client:\n    key: client_ip\n    rate: 10/s\n    burst: 10\n",
        "  - name: api\n    group: g\n    rate_limit: per_client\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut conn = Conn::open("127.0.0.2", addr).await;
    let start = Instant::now();
    let (mut ok, mut limited) = (0u32, 0u32);
    for i in 0..60 {
        let r = conn.get(addr, "/", &[]).await;
        match r.status.as_u16() {
            200 => {
                ok += 1;
                let rl = r
                    .headers
                    .get("ratelimit")
                    .expect("RateLimit on 200")
                    .to_str()
                    .unwrap();
                assert!(rl.starts_with("\"per_client\";r="), "{rl}");
            }
            429 => {
                limited += 1;
                let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert_eq!(retry, 1, "Retry-After");
                assert_eq!(r.headers["ratelimit-policy"], "\"per_client\";q=10;w=1");
                let rl = r.headers["ratelimit"].to_str().unwrap();
                assert!(rl.starts_with("\"per_client\";r=0;t="), "{rl}");
                assert_eq!(r.text(), "429 Too Many Requests\n");
            }
            s => panic!("request {i}: unexpected status {s}"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(elapsed < 5.0, "60 local requests took {elapsed}s");
    // 10 at once, then one more per 100 ms that passed.
    let expected = 10.0 + elapsed * 10.0;
    assert!(
        f64::from(ok) >= 10.0 && f64::from(ok) <= expected + 1.0,
        "{ok} allowed in {elapsed:.3}s (expected about {expected:.1})"
    );
    assert_eq!(ok + limited, 60);
    assert!(limited >= 40, "{limited} refused");
    // A refused request never reaches the upstream.
    assert_eq!(up.hits(), ok as usize);
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "weir_rate_limited_total{route=\"api\",policy=\"per_client\"}"
        ),
        Some(f64::from(limited)),
        "{m}"
    );
    // Another client address has its own bucket.
    let r = limits_support::get_from("127.0.0.3", addr, "/").await;
    assert_eq!(r.status, 200);
    // After a second the bucket has refilled (about 10 more).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut again = 0;
    for _ in 0..10 {
        if conn.get(addr, "/", &[]).await.status == 200 {
            again += 1;
        }
    }
    assert!(again >= 9, "{again} allowed after a refill");
    proxy.shutdown().await;
}

#[tokio::test]
async fn api_keys_have_separate_buckets_and_absent_keys_share_one() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(
        up.addr,
        "  per_key:\n    key: header:x-api-key\n    rate: 3/m\n",
        "  - name: api\n    group: g\n    rate_limit: [per_key]\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let mut conn = Conn::open("127.0.0.1", addr).await;
    let count = |statuses: Vec<u16>| statuses.iter().filter(|&&s| s == 200).count();
    let mut run = async |key: Option<&str>| {
        let mut s = Vec::new();
        for _ in 0..5 {
            let h: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
            s.push(conn.get(addr, "/", &h).await.status.as_u16());
        }
        s
    };
    let k1 = run(Some("key-1")).await;
    let k2 = run(Some("key-2")).await;
    let none = run(None).await;
    assert_eq!(count(k1.clone()), 3, "{k1:?}");
    assert_eq!(count(k2.clone()), 3, "{k2:?}");
    // Requests without the header are limited together, not let through.
    assert_eq!(count(none.clone()), 3, "{none:?}");
    assert_eq!(&k1[3..], &[429, 429]);
    // From another address, key-1 is still the same (exhausted) bucket.
    let r = Conn::open("127.0.0.3", addr)
        .await
        .get(addr, "/", &[("x-api-key", "key-1")])
        .await;
    assert_eq!(r.status, 429);
    // burst defaults to the count in rate: q=3, refilled in 60 s.
    assert_eq!(r.headers["ratelimit-policy"], "\"per_key\";q=3;w=60");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((19..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(up.hits(), 9);
    proxy.shutdown().await;
}

#[tokio::test]
async fn two_policies_on_one_route_and_claim_keys() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let up = spawn_upstream("a").await;
    let policies = "  per_user:\n    key: claim:sub\n    rate: 2/m\n  per_client:\n    key: client_ip\n    rate: 100/m\n    burst: 3\n";
    let yaml = yaml(
        up.addr,
        policies,
        "  - name: api\n    group: g\n    rate_limit: [per_user, per_client]\n",
    )
    .replace(
        "rate_limits:",
        "jwt:\n  keys:\n    - algorithm: HS256\n      secret: test-secret-0123456789\nrate_limits:",
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    let token = |sub: &str| {
        let claims = serde_json::json!({"sub": sub, "exp": 4_000_000_000u64});
        let t = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"test-secret-0123456789"),
        )
        .unwrap();
        format!("Bearer {t}")
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let mut conn = Conn::open("127.0.0.2", addr).await;
    let a1 = conn.get(addr, "/", &[("authorization", &alice)]).await;
    assert_eq!(a1.status, 200);
    assert_eq!(
        a1.headers["ratelimit-policy"],
        "\"per_user\";q=2;w=60, \"per_client\";q=3;w=2"
    );
    assert_eq!(
        conn.get(addr, "/", &[("authorization", &alice)])
            .await
            .status,
        200
    );
    let a3 = conn.get(addr, "/", &[("authorization", &alice)]).await;
    assert_eq!(a3.status, 429, "alice's claim bucket is empty");
    // Bob has his own claim bucket; the client-address bucket (3) is shared.
    let b1 = conn.get(addr, "/", &[("authorization", &bob)]).await;
    assert_eq!(b1.status, 200);
    let b2 = conn.get(addr, "/", &[("authorization", &bob)]).await;
    assert_eq!(
        b2.status, 429,
        "the per_client bucket of 127.0.0.2 is empty"
    );
    assert!(
        b2.headers["ratelimit"]
            .to_str()
            .unwrap()
            .contains("\"per_client\";r=0"),
        "{:?}",
        b2.headers["ratelimit"]
    );
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(
            &m,
            "weir_rate_limited_total{route=\"api\",policy=\"per_user\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "weir_rate_limited_total{route=\"api\",policy=\"per_client\"}"
        ),
        Some(1.0),
        "{m}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn buckets_survive_a_reload_of_an_unchanged_policy() {
    let up = spawn_upstream("a").await;
    let text = yaml(
        up.addr,
        "  p:\n    key: client_ip\n    rate: 2/m\n",
        "  - name: api\n    group: g\n    rate_limit: p\n",
    );
    let proxy = start_proxy(&text).await;
    let addr = proxy.local_addr("http").unwrap();
    for _ in 0..2 {
        assert_eq!(
            limits_support::get_from("127.0.0.2", addr, "/")
                .await
                .status,
            200
        );
    }
    proxy.apply(support::config(&text)).await.unwrap();
    assert_eq!(
        limits_support::get_from("127.0.0.2", addr, "/")
            .await
            .status,
        429
    );
    // A changed policy starts afresh.
    proxy
        .apply(support::config(&text.replace("2/m", "3/m")))
        .await
        .unwrap();
    assert_eq!(
        limits_support::get_from("127.0.0.2", addr, "/")
            .await
            .status,
        200
    );
    proxy.shutdown().await;
}

/// The flood of the issue: a million distinct keys through one policy's
/// limiter (the code path of every request) stays within its key cap, counts
/// its evictions, and its memory stays under the bound documented in
/// docs/limits.md (96 bytes per key of max_keys; quick_cache accounts about
/// 73), and the process's resident memory grows by less than 64 MiB.
#[test]
fn a_million_distinct_keys_stay_bounded() {
    // Measures this process: alone in a child process of the test binary.
    if !support::isolated(module_path!(), "a_million_distinct_keys_stay_bounded") {
        return;
    }
    use weir::limits::policy::KeyValue;
    use weir::limits::rate::LocalLimiter;
    let max_keys = 100_000;
    // 10 per hour: nothing refills while the test runs.
    let limiter = LocalLimiter::from_parts(
        Duration::from_secs(360),
        10,
        max_keys,
        governor::clock::MonotonicClock,
    );
    // A key seen all along stays limited: the flood does not reset it.
    let hot = KeyValue::Bytes(b"hot-client");
    for _ in 0..10 {
        assert!(limiter.check(&hot).allowed);
    }
    let rss_before = rss_kib();
    let start = Instant::now();
    let mut bytes = 0usize;
    for i in 0..1_000_000u64 {
        let key = i.to_le_bytes();
        let d = limiter.check(&KeyValue::Bytes(&key));
        assert!(d.allowed, "a new key has a full bucket");
        if i % 1000 == 0 {
            assert!(
                !limiter.check(&hot).allowed,
                "hot key reset by the flood at {i}"
            );
            bytes = bytes.max(limiter.store().memory_used());
        }
    }
    let took = start.elapsed();
    let store = limiter.store();
    assert!(store.len() <= max_keys, "{} keys held", store.len());
    assert!(
        store.evictions() >= 1_000_000 - max_keys as u64,
        "{} evictions",
        store.evictions()
    );
    let bound = max_keys * 96;
    assert!(bytes <= bound, "store held {bytes} bytes, bound {bound}");
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "resident memory grew by {grown} KiB");
    eprintln!(
        "1M keys: {took:?}, RSS +{grown} KiB, {} held, {} evicted, peak {bytes} bytes ({:.1} per key of the cap)",
        store.len(),
        store.evictions(),
        bytes as f64 / max_keys as f64
    );
}

/// Resident memory of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
