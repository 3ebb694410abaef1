//! `store: redis` against a real `redis-server` started by the test on a
//! free port: two weir instances share one bucket per key; with Redis killed
//! `on_error: allow` serves and `deny` answers 503, neither process dies,
//! and both reconnect by themselves when Redis is back.

use crate::limits_support;
use crate::support;

use std::time::{Duration, Instant};

use limits_support::{metric, metrics, Conn, RedisServer};
use support::{server, spawn_upstream, start_proxy, ConfigYaml};

fn yaml(upstream: std::net::SocketAddr, redis: &str, on_error: &str, rate: &str) -> String {
    ConfigYaml::new()
        .top(&format!(
            "rate_limits:\n  shared:\n    key: header:x-api-key\n    rate: {rate}\n    store: redis\n\
             redis:\n  url: {redis}\n  on_error: {on_error}\n  timeout: 200ms\n"
        ))
        .admin("")
        .routes("  - name: api\n    group: g\n    rate_limit: shared\n")
        .group("g", "", &server(upstream))
        .build()
}

#[tokio::test]
async fn two_instances_let_exactly_burst_through() {
    let redis = RedisServer::start().await;
    let up = spawn_upstream("a").await;
    // 5 per minute: nothing refills during the test.
    let a = start_proxy(&yaml(up.addr, &redis.url(), "allow", "5/m")).await;
    let b = start_proxy(&yaml(up.addr, &redis.url(), "allow", "5/m")).await;
    let (aa, ba) = (a.local_addr("http").unwrap(), b.local_addr("http").unwrap());
    let mut ca = Conn::open("127.0.0.1", aa).await;
    let mut cb = Conn::open("127.0.0.1", ba).await;
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..20 {
        let r = if i % 2 == 0 {
            ca.get(aa, "/", &[("x-api-key", "k1")]).await
        } else {
            cb.get(ba, "/", &[("x-api-key", "k1")]).await
        };
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(r.headers["ratelimit-policy"], "\"shared\";q=5;w=60");
                let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=12).contains(&retry), "Retry-After {retry}");
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!(ok, 5, "both instances together allow exactly burst");
    assert_eq!(limited, 15);
    assert_eq!(up.hits(), 5);
    // Another key is another bucket, on either instance.
    assert_eq!(cb.get(ba, "/", &[("x-api-key", "k2")]).await.status, 200);
    // Requests without the key share one "absent" bucket across instances.
    let mut absent = 0;
    for i in 0..8 {
        let r = if i % 2 == 0 {
            ca.get(aa, "/", &[]).await
        } else {
            cb.get(ba, "/", &[]).await
        };
        absent += usize::from(r.status == 200);
    }
    assert_eq!(absent, 5);
    let m = metrics(&a).await;
    assert!(
        metric(
            &m,
            "weir_rate_limited_total{route=\"api\",policy=\"shared\"}"
        )
        .unwrap()
            >= 7.0,
        "{m}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_down_allow_serves_deny_answers_503_and_both_reconnect() {
    let mut redis = RedisServer::start().await;
    let up = spawn_upstream("a").await;
    let open = start_proxy(&yaml(up.addr, &redis.url(), "allow", "2/m")).await;
    let closed = start_proxy(&yaml(up.addr, &redis.url(), "deny", "2/m")).await;
    let (oa, ca) = (
        open.local_addr("http").unwrap(),
        closed.local_addr("http").unwrap(),
    );
    let key = [("x-api-key", "k")];
    let mut o = Conn::open("127.0.0.1", oa).await;
    let mut c = Conn::open("127.0.0.1", ca).await;
    assert_eq!(o.get(oa, "/", &key).await.status, 200);
    assert_eq!(c.get(ca, "/", &key).await.status, 200);
    assert_eq!(o.get(oa, "/", &key).await.status, 429);

    redis.kill();
    for _ in 0..5 {
        let r = o.get(oa, "/", &key).await;
        assert_eq!(r.status, 200, "on_error: allow fails open: {}", r.text());
        assert!(r.headers.get("ratelimit").is_none());
        let r = c.get(ca, "/", &key).await;
        assert_eq!(r.status, 503, "on_error: deny: {}", r.text());
        assert_eq!(r.headers["retry-after"], "1");
    }
    let m = metrics(&open).await;
    assert_eq!(
        metric(
            &m,
            "weir_rate_limit_redis_errors_total{policy=\"shared\",action=\"allow\"}"
        ),
        Some(5.0),
        "{m}"
    );
    let m = metrics(&closed).await;
    assert_eq!(
        metric(
            &m,
            "weir_rate_limit_redis_errors_total{policy=\"shared\",action=\"deny\"}"
        ),
        Some(5.0),
        "{m}"
    );

    // Back (empty): both reconnect by themselves and limit again.
    redis.restart().await;
    for (conn, addr, name) in [(&mut c, ca, "deny"), (&mut o, oa, "allow")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = conn.get(addr, "/", &[("x-api-key", name)]).await;
            // A Redis answer carries the RateLimit headers.
            if r.status == 200 && r.headers.contains_key("ratelimit") {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: no reconnect within 10s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // And they share buckets again: 2 tokens for "after" across both.
    assert_eq!(c.get(ca, "/", &[("x-api-key", "after")]).await.status, 200);
    assert_eq!(o.get(oa, "/", &[("x-api-key", "after")]).await.status, 200);
    assert_eq!(c.get(ca, "/", &[("x-api-key", "after")]).await.status, 429);
    assert_eq!(o.get(oa, "/", &[("x-api-key", "after")]).await.status, 429);
    open.shutdown().await;
    closed.shutdown().await;
}

#[tokio::test]
async fn redis_script_arithmetic_with_a_fixed_clock() {
    use weir::limits::policy::{PolicyConfig, RateKey, RedisConfig, Store};
    use weir::limits::redis_store::RedisStore;
    let redis = RedisServer::start().await;
    let store = RedisStore::new(&RedisConfig {
        url: redis.url(),
        on_error: weir::limits::OnError::Deny,
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    // 10/s, burst 3.
    let p = PolicyConfig {
        name: "t".into(),
        key: RateKey::ClientIp,
        count: 10,
        period: Duration::from_millis(100),
        burst: 3,
        store: Store::Redis,
        max_keys: 1,
    };
    let q = PolicyConfig {
        name: "u".into(),
        burst: 1,
        period: Duration::from_secs(60),
        ..p.clone()
    };
    let key = RedisStore::key(&p, b"=x");
    let t0 = 1_700_000_000_000_000u64;
    let check = async |now: u64| store.check(&[(&p, key.clone())], Some(now)).await.unwrap()[0];
    for (i, remaining) in [2, 1, 0].into_iter().enumerate() {
        let d = check(t0).await;
        assert!(d.allowed, "request {i}");
        assert_eq!(d.remaining, remaining);
        assert_eq!(d.reset, Duration::from_millis(100 * (i as u64 + 1)));
    }
    let d = check(t0).await;
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_millis(100));
    assert_eq!(d.reset, Duration::from_millis(300));
    assert!(!check(t0 + 99_999).await.allowed);
    assert!(check(t0 + 100_000).await.allowed);
    // Two policies in one script: the first refusal stops, later ones are not counted.
    let kq = RedisStore::key(&q, b"=x");
    let both = store
        .check(&[(&p, key.clone()), (&q, kq.clone())], Some(t0 + 100_000))
        .await
        .unwrap();
    assert_eq!(both.len(), 1, "stopped at the first refusal");
    assert!(!both[0].allowed);
    let later = t0 + 10_000_000;
    let both = store
        .check(&[(&p, key.clone()), (&q, kq.clone())], Some(later))
        .await
        .unwrap();
    assert!(both.iter().all(|d| d.allowed) && both.len() == 2);
    let both = store
        .check(&[(&p, key), (&q, kq)], Some(later))
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    assert!(both[0].allowed && !both[1].allowed);
}
