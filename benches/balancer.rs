//! Cost of one pick per balancing algorithm at 2, 16, 256 and 4,096 servers.
//!
//! `cargo bench --bench balancer -- --warm-up-time 1 --measurement-time 2`
//!
//! Servers have weights 1, 2, 3 in turn; every server has 1 to 4 requests in
//! flight (so `least_connections` has no idle server to settle on) and a
//! response-time sample. The client address and the `hash` key change on
//! every pick.
//!
//! `least_connections` gets three more cases: `idle` (no request in flight),
//! `one_idle` (loaded as above but for one idle server two thirds along, so
//! every pick climbs and descends the tree to it) and `request/…`: a pick
//! followed by the start and the end of the request, i.e. two updates of the
//! index, next to the same for `round_robin`, whose servers are in no index.

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
                edge: Default::default(),
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
        protocol: Default::default(),
        tls: None,
        edge: Default::default(),
        discovery: None,
    }
}

/// Requests in flight per server of a bench group.
#[derive(Clone, Copy)]
enum Load {
    /// 1 to 4 per server.
    Busy,
    /// None.
    Idle,
    /// As `Busy`, but for one idle server at two thirds of the group.
    OneIdle,
}

/// The servers of `config` with `load` in flight (the guards keep it) and a
/// response-time sample each.
fn servers(config: &GroupConfig, load: Load) -> (Vec<Server>, Vec<InFlightGuard>) {
    let servers: Vec<Server> = config
        .servers
        .iter()
        .map(|s| Server::new(s, Arc::new(ServerState::default())))
        .collect();
    let n = servers.len();
    let guards = servers
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.state.record_response_time(
                Duration::from_micros(500 + (i as u64 % 7) * 100),
                config.ewma_decay,
            );
            let count = match load {
                Load::Idle => 0,
                Load::OneIdle if i == n * 2 / 3 => 0,
                Load::Busy | Load::OneIdle => 1 + i % 4,
            };
            (0..count)
                .map(|_| s.state.start_request())
                .collect::<Vec<_>>()
        })
        .collect();
    (servers, guards)
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
    let mut cases: Vec<(String, Algorithm, Load)> = Algorithm::ALL
        .iter()
        .map(|&(name, algorithm)| (name.to_string(), algorithm, Load::Busy))
        .collect();
    cases.push((
        "least_connections_idle".into(),
        Algorithm::LeastConnections,
        Load::Idle,
    ));
    cases.push((
        "least_connections_one_idle".into(),
        Algorithm::LeastConnections,
        Load::OneIdle,
    ));
    for (name, algorithm, load) in cases {
        let mut g = c.benchmark_group(format!("pick/{name}"));
        for n in SIZES {
            let config = group(algorithm, n);
            let (servers, _load) = servers(&config, load);
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
    // A whole request's balancing work: pick, start (in-flight up) and end
    // (in-flight down). For least_connections both changes update the index.
    let ctx = PickContext {
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        uri: &uri,
        headers: &keyed[0],
    };
    for algorithm in [Algorithm::RoundRobin, Algorithm::LeastConnections] {
        let mut g = c.benchmark_group(format!("request/{}", algorithm.name()));
        for n in SIZES {
            let config = group(algorithm, n);
            let (servers, _load) = servers(&config, Load::Busy);
            let balancer = balancer::build(&config, &servers);
            let usable = |_: usize| true;
            g.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| {
                    let i = balancer.pick(&servers, &ctx, &usable).unwrap();
                    let guard = servers[i].state.start_request();
                    drop(black_box(guard));
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
