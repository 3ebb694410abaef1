//! The cost of one local rate-limit check (issue 15): key extraction from a
//! request plus the GCRA decision in the capped key store, for one hot key,
//! for keys spread over a full store (evicting), and the header formatting
//! of a decision.
//!
//! ```text
//! cargo bench --bench rate_limit -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Uri};
use weir::limits::policy::{KeyInput, KeyValue, PolicyConfig, RateKey, Store};
use weir::limits::rate::LocalLimiter;

fn policy(key: RateKey, max_keys: usize) -> PolicyConfig {
    PolicyConfig {
        name: "bench".into(),
        key,
        count: 1_000_000,
        period: Duration::from_micros(1),
        burst: 1_000_000,
        store: Store::Local,
        max_keys,
    }
}

fn checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit");

    // One client hammering one key (always allowed: a huge bucket).
    let p = policy(RateKey::ClientIp, 100_000);
    let limiter = LocalLimiter::new(&p);
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_static("k-0123456789"));
    let uri: Uri = "/api/items?page=2".parse().unwrap();
    let input = KeyInput {
        client_ip: "127.0.0.2".parse().unwrap(),
        uri: &uri,
        headers: &headers,
        claims: None,
    };
    g.bench_function("client_ip_hot_key", |b| {
        b.iter(|| {
            let key = p.key.extract(black_box(&input));
            black_box(limiter.check(&key))
        })
    });

    let ph = policy(RateKey::parse("header:x-api-key").unwrap(), 100_000);
    let limiter_h = LocalLimiter::new(&ph);
    g.bench_function("header_key_hot_key", |b| {
        b.iter(|| {
            let key = ph.key.extract(black_box(&input));
            black_box(limiter_h.check(&key))
        })
    });

    // Distinct keys through a store capped at 10,000: every check inserts
    // and evicts (the flood case).
    let pf = policy(RateKey::ClientIp, 10_000);
    let limiter_f = LocalLimiter::new(&pf);
    let mut i = 0u64;
    g.bench_function("distinct_keys_evicting", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let bytes = i.to_le_bytes();
            black_box(limiter_f.check(&KeyValue::Bytes(&bytes)))
        })
    });

    let d = limiter.check(&KeyValue::Absent);
    g.bench_function("ratelimit_state_header", |b| {
        b.iter(|| black_box(weir::limits::headers::state_value([(&p, &d)])))
    });

    // The whole per-request path of a route with one local policy: key,
    // check and both headers.
    let yaml = "listeners:\n  - address: 127.0.0.1:0\nrate_limits:\n  p:\n    key: client_ip\n    rate: 1000000/s\nroutes:\n  - group: g\n    rate_limit: p\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9\n";
    let config = weir::config::load_str(yaml, std::path::Path::new("bench.yaml")).unwrap();
    let registry = weir::limits::LimitsRegistry::default();
    let names: Vec<std::sync::Arc<str>> = config.routes.iter().map(|r| r.name.clone()).collect();
    let limits = weir::limits::Limits::build(&config.limits, &names, &registry);
    let route = limits.route(0).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    g.bench_function("route_check_with_headers", |b| {
        b.iter(|| rt.block_on(async { black_box(route.check(black_box(&input)).await) }))
    });
    g.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
