//! Response compression (`routes[].compression`, issue 16 point 1): a 20 KB
//! JSON body comes back zstd, br or gzip as the client asks, decodes (with
//! the real decoders) to the original and is less than half the size;
//! small, binary-typed, already-encoded, no-Accept-Encoding, HEAD, Range,
//! 206, 304 and `no-transform` responses pass unchanged; `Vary` is added,
//! `Content-Length` dropped, a strong `ETag` weakened. Streaming is in
//! `content_streaming.rs`.

use crate::support;

use std::io::Read;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::*;

/// A 20 KB JSON document (varied enough not to be trivially compressible).
fn json_20k() -> String {
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < 20_000 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user-{}\",\"email\":\"user{}@example.com\",\"active\":{},\"score\":{}}}",
            i * 7919 % 10007,
            i * 31 % 997,
            i.is_multiple_of(3),
            (i * 2654435761) % 100_000
        ));
        i += 1;
    }
    s.push(']');
    s
}

fn response(status: StatusCode, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    for (n, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// An upstream with one behaviour per path.
async fn upstream() -> Upstream {
    spawn_upstream_with("origin", |req: Request<Incoming>| async move {
        let json = json_20k().into_bytes();
        let ct = ("content-type", "application/json; charset=utf-8");
        match req.uri().path() {
            "/json" => response(StatusCode::OK, &[ct, ("etag", "\"v1\"")], json),
            "/small" => response(StatusCode::OK, &[ct], b"{\"ok\":true}".to_vec()),
            "/png" => response(StatusCode::OK, &[("content-type", "image/png")], json),
            "/encoded" => response(
                StatusCode::OK,
                &[ct, ("content-encoding", "gzip")],
                b"pretend-gzip".repeat(2000),
            ),
            "/no-transform" => response(
                StatusCode::OK,
                &[ct, ("cache-control", "public, no-transform")],
                json,
            ),
            "/partial" => response(
                StatusCode::PARTIAL_CONTENT,
                &[ct, ("content-range", "bytes 0-19999/40000")],
                json,
            ),
            "/not-modified" => {
                response(StatusCode::NOT_MODIFIED, &[("etag", "\"v1\"")], Vec::new())
            }
            "/html" => response(
                StatusCode::OK,
                &[("content-type", "text/html"), ("vary", "Origin")],
                json,
            ),
            _ => response(StatusCode::NOT_FOUND, &[], Vec::new()),
        }
    })
    .await
}

async fn proxy(up: &Upstream, compression: &str) -> weir::Running {
    start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n    compression: {compression}\n\
         groups:\n  g:\n    servers:\n      - address: {}\n",
        up.addr
    ))
    .await
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip decodes");
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("brotli decodes");
        }
        "zstd" => out = zstd::stream::decode_all(body).expect("zstd decodes"),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

fn varies_on_accept_encoding(r: &Reply) -> bool {
    r.headers.get_all("vary").iter().any(|v| {
        v.to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    })
}

#[tokio::test]
async fn json_comes_back_in_the_coding_the_client_asks_for() {
    let up = upstream().await;
    let weir = proxy(&up, "{}").await;
    let addr = weir.local_addr("http").unwrap();
    let original = json_20k();
    for (accept, want) in [
        ("zstd", "zstd"),
        ("br", "br"),
        ("gzip", "gzip"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip;q=0, br", "br"),
        // Server preference among what the client accepts (issue 16).
        ("zstd;q=0.2, gzip;q=0.8", "zstd"),
        ("zstd;q=0, gzip;q=0.8", "gzip"),
        ("*", "zstd"),
        ("identity;q=0, x-gzip", "gzip"),
    ] {
        let r = request_host(
            addr,
            "GET",
            "example.com",
            "/json",
            &[("accept-encoding", accept)],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            header(&r, "content-encoding"),
            Some(want),
            "Accept-Encoding: {accept}"
        );
        let decoded = decode(want, &r.body);
        assert_eq!(
            decoded,
            original.as_bytes(),
            "{want} decodes to the original"
        );
        assert!(
            r.body.len() * 2 < original.len(),
            "{want}: {} bytes is not less than half of {}",
            r.body.len(),
            original.len()
        );
        assert!(varies_on_accept_encoding(&r), "{accept}: Vary");
        assert_eq!(
            header(&r, "content-length"),
            None,
            "{accept}: no Content-Length"
        );
        assert_eq!(header(&r, "etag"), Some("W/\"v1\""), "{accept}: weak ETag");
    }
}

#[tokio::test]
async fn what_must_not_be_compressed_passes_unchanged() {
    let up = upstream().await;
    let weir = proxy(&up, "{}").await;
    let addr = weir.local_addr("http").unwrap();
    let gzip = [("accept-encoding", "gzip, br, zstd")];
    let json = json_20k();

    // No Accept-Encoding: identity, but still Vary (a cache must not give
    // this copy to a client that asks for gzip).
    let r = request_host(addr, "GET", "example.com", "/json", &[]).await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(r.body, json.as_bytes());
    let len = json.len().to_string();
    assert_eq!(header(&r, "content-length"), Some(len.as_str()));
    assert!(varies_on_accept_encoding(&r));
    assert_eq!(
        header(&r, "etag"),
        Some("\"v1\""),
        "strong ETag kept on identity"
    );

    // Accept-Encoding that refuses every coding weir has.
    let r = request_host(
        addr,
        "GET",
        "example.com",
        "/json",
        &[("accept-encoding", "gzip;q=0, deflate")],
    )
    .await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(r.body, json.as_bytes());

    // Small (under min_size), binary-typed, already encoded.
    let r = request_host(addr, "GET", "example.com", "/small", &gzip).await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(&r.body[..], b"{\"ok\":true}");
    let r = request_host(addr, "GET", "example.com", "/png", &gzip).await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(r.body, json.as_bytes());
    assert!(
        !varies_on_accept_encoding(&r),
        "image/png is never compressed"
    );
    let r = request_host(addr, "GET", "example.com", "/encoded", &gzip).await;
    assert_eq!(header(&r, "content-encoding"), Some("gzip"));
    assert_eq!(r.body, b"pretend-gzip".repeat(2000));

    // Cache-Control: no-transform, 206, 304.
    let r = request_host(addr, "GET", "example.com", "/no-transform", &gzip).await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(r.body, json.as_bytes());
    let r = request_host(addr, "GET", "example.com", "/partial", &gzip).await;
    assert_eq!(r.status, 206);
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(r.body, json.as_bytes());
    let r = request_host(addr, "GET", "example.com", "/not-modified", &gzip).await;
    assert_eq!(r.status, 304);
    assert_eq!(header(&r, "content-encoding"), None);

    // A Range request: the range is of the identity body.
    let r = request_host(
        addr,
        "GET",
        "example.com",
        "/json",
        &[gzip[0], ("range", "bytes=0-99")],
    )
    .await;
    assert_eq!(header(&r, "content-encoding"), None);

    // HEAD: no body to compress; the identity headers.
    let r = request_host(addr, "HEAD", "example.com", "/json", &gzip).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "content-encoding"), None);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn configured_algorithms_types_min_size_and_levels() {
    let up = upstream().await;
    let weir = proxy(
        &up,
        "{ algorithms: [gzip, br], min_size: 64KiB, types: [text/html], levels: { gzip: 9, br: 11 } }",
    )
    .await;
    let addr = weir.local_addr("http").unwrap();
    let json = json_20k();
    // zstd is not configured: the client's next choice.
    let r = request_host(
        addr,
        "GET",
        "example.com",
        "/html",
        &[("accept-encoding", "zstd, br")],
    )
    .await;
    // 20 KB is under min_size 64KiB: not compressed.
    assert_eq!(header(&r, "content-encoding"), None);
    drop(weir);

    let weir = proxy(
        &up,
        "{ algorithms: [gzip, br], types: [text/*], levels: { gzip: 9, br: 11 } }",
    )
    .await;
    let addr = weir.local_addr("http").unwrap();
    let r = request_host(
        addr,
        "GET",
        "example.com",
        "/html",
        &[("accept-encoding", "zstd, br, gzip")],
    )
    .await;
    assert_eq!(
        header(&r, "content-encoding"),
        Some("gzip"),
        "server preference among equals"
    );
    assert_eq!(decode("gzip", &r.body), json.as_bytes());
    // Vary keeps the server's own entry and adds ours.
    let vary: Vec<_> = r
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(vary, ["Origin", "Accept-Encoding"]);
    let r = request_host(
        addr,
        "GET",
        "example.com",
        "/html",
        &[("accept-encoding", "zstd")],
    )
    .await;
    assert_eq!(
        header(&r, "content-encoding"),
        None,
        "zstd is not in algorithms"
    );
    // JSON is not in types here.
    let r = request_host(
        addr,
        "GET",
        "example.com",
        "/json",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(header(&r, "content-encoding"), None);
}

#[tokio::test]
async fn a_route_without_compression_never_compresses() {
    let up = upstream().await;
    let weir = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n    servers:\n      - address: {}\n",
        up.addr
    ))
    .await;
    let addr = weir.local_addr("http").unwrap();
    let r = request_host(
        addr,
        "GET",
        "example.com",
        "/json",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert!(!varies_on_accept_encoding(&r));
}

#[tokio::test]
async fn http2_clients_get_compressed_responses_too() {
    let up = upstream().await;
    let weir = proxy(&up, "{}").await;
    let addr = weir.local_addr("http").unwrap();
    let req = Request::get(format!("http://{addr}/json"))
        .header("accept-encoding", "br")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = h2c_request(addr, req).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(header(&r, "content-encoding"), Some("br"));
    assert_eq!(decode("br", &r.body), json_20k().as_bytes());
}
