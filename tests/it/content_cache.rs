//! The response cache and compression together (issue 16: "interacts
//! correctly with compression"): the cache keeps the identity body the
//! server sent and weir compresses per client, on misses and hits alike; the
//! route's response header rules apply to hits too.

use crate::support;

use std::io::Read;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use support::*;

fn body() -> String {
    (0..2000)
        .map(|i| format!("line {i} of a cacheable text\n"))
        .collect()
}

async fn upstream() -> Upstream {
    spawn_upstream_with("origin", |_req: Request<Incoming>| async move {
        let mut r = Response::new(Full::new(Bytes::from(body())));
        let h = r.headers_mut();
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("cache-control", "max-age=60".parse().unwrap());
        h.insert("x-powered-by", "origin".parse().unwrap());
        r
    })
    .await
}

fn gunzip(body: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut out)
        .expect("gzip decodes");
    out
}

#[tokio::test]
async fn hits_are_compressed_per_client_from_the_identity_body() {
    let up = upstream().await;
    let weir = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n    cache: true\n    compression: {{}}\n    response_headers: {{ remove: [x-powered-by], set: {{ x-edge: weir }} }}\n\
         groups:\n  g:\n    servers:\n      - address: {}\n",
        up.addr
    ))
    .await;
    let addr = weir.local_addr("http").unwrap();
    let gzip = [("accept-encoding", "gzip")];

    // Miss: stored as sent, compressed for this client.
    let first = request_host(addr, "GET", "example.com", "/doc", &gzip).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["content-encoding"], "gzip");
    assert_eq!(gunzip(&first.body), body());

    // Hit for a client without Accept-Encoding: the identity body.
    let plain = request_host(addr, "GET", "example.com", "/doc", &[]).await;
    assert!(plain.headers.get("age").is_some(), "{:?}", plain.headers);
    assert!(plain.headers.get("content-encoding").is_none());
    assert_eq!(plain.text(), body());

    // Hit for a gzip client: compressed again from the stored identity body.
    let hit = request_host(addr, "GET", "example.com", "/doc", &gzip).await;
    assert!(hit.headers.get("age").is_some(), "{:?}", hit.headers);
    let status = hit.headers["cache-status"].to_str().unwrap();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(hit.headers["content-encoding"], "gzip");
    assert_eq!(gunzip(&hit.body), body());

    // Response header rules run on hits as on misses.
    for r in [&first, &plain, &hit] {
        assert!(r.headers.get("x-powered-by").is_none(), "{:?}", r.headers);
        assert_eq!(r.headers["x-edge"], "weir");
    }
    assert_eq!(up.hits(), 1, "one upstream request for three responses");
}
