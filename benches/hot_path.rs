//! Hot-path micro-benchmarks (issue 8): route lookup with 10, 1,000 and
//! 10,000 routes; proxy header rewrite; and one whole request through weir
//! over loopback against an in-process upstream (with the direct request to
//! that upstream as the floor).
//!
//! ```text
//! cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use weir::proxy::headers::{self, ClientInfo};
use weir::route::{path, RequestView};

/// A config with `n` prefix routes `/svc{i}` (every tenth with a host) to one group.
fn config_with_routes(n: usize) -> weir::Config {
    let mut yaml = String::from("listeners:\n  - address: 127.0.0.1:0\nroutes:\n");
    for i in 0..n {
        if i % 10 == 0 {
            yaml.push_str(&format!(
                "  - match:\n      host: h{i}.example.com\n      path_prefix: /svc{i}\n    group: g\n"
            ));
        } else {
            yaml.push_str(&format!(
                "  - match:\n      path_prefix: /svc{i}\n    group: g\n"
            ));
        }
    }
    yaml.push_str("groups:\n  g:\n    servers:\n      - address: 127.0.0.1:9\n");
    weir::config::load_str(&yaml, Path::new("bench.yaml")).expect("bench config")
}

fn route_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    let headers = HeaderMap::new();
    for n in [10usize, 1_000, 10_000] {
        let config = config_with_routes(n);
        let table = weir::route::RouteTable::new(config.routes.clone());
        let last = format!("/svc{}/items/42", n - 1);
        g.bench_with_input(BenchmarkId::new("last_route", n), &n, |b, _| {
            b.iter(|| {
                let p = path::normalize(black_box(&last));
                let view = RequestView {
                    host: Some("api.example.com"),
                    path: &p,
                    method: &Method::GET,
                    headers: &headers,
                    query: None,
                    token: None,
                };
                black_box(table.lookup_index(&view))
            })
        });
        let first = "/svc1/items/42";
        g.bench_with_input(BenchmarkId::new("second_route", n), &n, |b, _| {
            b.iter(|| {
                let p = path::normalize(black_box(first));
                let view = RequestView {
                    host: Some("api.example.com"),
                    path: &p,
                    method: &Method::GET,
                    headers: &headers,
                    query: None,
                    token: None,
                };
                black_box(table.lookup_index(&view))
            })
        });
    }
    g.finish();
}

fn header_rewrite(c: &mut Criterion) {
    let client = ClientInfo::new("10.1.2.3".parse().unwrap(), false);
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, br"),
        ("cookie", "a=1; b=2"),
        ("x-request-id", "4f0c7a1e-5d0e-4c1f-9a43-0b0b9e1d2f3a"),
    ] {
        base.insert(k, HeaderValue::from_static(v));
    }
    let host = HeaderValue::from_static("api.example.com");
    c.bench_function("header_rewrite/request", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                headers::rewrite_request(&mut h, &client, Version::HTTP_11, Some(&host));
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("path_normalize/dirty", |b| {
        b.iter(|| black_box(path::normalize(black_box("/a/./b/../%70rofile//me"))))
    });
}

/// One GET through weir (loopback, keep-alive) vs the same GET straight to the upstream.
fn whole_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, proxy) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(&[b'x'; 128]))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let yaml = format!(
            "listeners:\n  - name: web\n    address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: {upstream}\n"
        );
        let config = weir::config::load_str(&yaml, Path::new("bench.yaml")).unwrap();
        let running = weir::Proxy::new(config).start().await.unwrap();
        let proxy = running.local_addr("web").unwrap();
        std::mem::forget(running);
        (upstream, proxy)
    });
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut g = c.benchmark_group("whole_request");
    for (name, addr) in [("direct", upstream), ("through_weir", proxy)] {
        let uri: http::Uri = format!("http://{addr}/items/42").parse().unwrap();
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let req = Request::get(uri.clone())
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                black_box(resp.into_body().collect().await.unwrap().to_bytes())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, route_lookup, header_rewrite, whole_request);
criterion_main!(benches);
