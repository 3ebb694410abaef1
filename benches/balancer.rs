//! Cost of one pick per balancing algorithm at 2, 16, 256 and 4,096 servers.
//!
//! `cargo bench --bench balancer -- --warm-up-time 1 --measurement-time 2`
//!
//! Servers have weights 1, 2, 3 in turn; every server has 1 to 4 requests in
//! flight (so `least_connections` cannot stop early at an idle server: its
//! worst case, a full scan) and a response-time sample. The client address
//! and the `hash` key change on every pick.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Uri};
use weir::balancer::{self, PickContext};
use weir::config::{Algorithm, GroupConfig, ServerConfig, Timeouts};
use weir::upstream::{InFlightGuard, Server, ServerState};

const SIZES: [usize; 4] = [2, 16, 256, 4096];

fn group(algorithm: Algorithm, n: usize) -> GroupConfig {
    GroupConfig {
        name: Arc::from("bench"),
        algorithm,
        hash_key: (algorithm == Algorithm::Hash)
            .then(|| weir::balancer::hash::HashKey::parse("header:x-user").unwrap()),
        default_rtt: Duration::from_millis(30),
        ewma_decay: Duration::from_secs(10),
        servers: (0..n)
            .map(|i| ServerConfig {
                id: Arc::from(format!("server-{i}")),
                address: format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255)
                    .parse()
                    .unwrap(),
                weight: 1 + (i % 3) as u32,
            })
            .collect(),
        timeouts: Timeouts {
            connect: Duration::from_secs(3),
            response: Duration::from_secs(60),
        },
        retries: 1,
        pool_idle_timeout: Duration::from_secs(90),
        pool_max_idle_per_server: 128,
        sticky: None,
        health_check: None,
        passive: None,
        fail_open: false,
    }
}

fn bench(c: &mut Criterion) {
    let uri = Uri::from_static("/bench?user=1");
    let keyed: Vec<HeaderMap> = (0..1024)
        .map(|i| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-user",
                HeaderValue::from_str(&format!("user-{i}")).unwrap(),
            );
            h
        })
        .collect();
    for (name, algorithm) in Algorithm::ALL {
        let mut g = c.benchmark_group(format!("pick/{name}"));
        for n in SIZES {
            let config = group(algorithm, n);
            let servers: Vec<Server> = config
                .servers
                .iter()
                .map(|s| Server::new(s, Arc::new(ServerState::default())))
                .collect();
            let _load: Vec<InFlightGuard> = servers
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    s.state.record_response_time(
                        Duration::from_micros(500 + (i as u64 % 7) * 100),
                        config.ewma_decay,
                    );
                    (0..=i % 4)
                        .map(|_| s.state.start_request())
                        .collect::<Vec<_>>()
                })
                .collect();
            let balancer = balancer::build(&config, &servers);
            let usable = |_: usize| true;
            let mut k: u32 = 0;
            g.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| {
                    k = k.wrapping_add(1);
                    let ctx = PickContext {
                        client_ip: IpAddr::V4(Ipv4Addr::from(k.wrapping_mul(2_654_435_761))),
                        uri: &uri,
                        headers: &keyed[k as usize & 1023],
                    };
                    black_box(balancer.pick(&servers, black_box(&ctx), &usable))
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
