//! Compression speed per core (issue 16): one 20 KB JSON response body
//! through weir's streaming encoder (`content::compress::Compressed`, the
//! code the proxy runs) for zstd 3, brotli 4 and gzip 6, the default levels,
//! plus gzip 1 (nginx's default `gzip_comp_level`). Criterion reports the
//! input bytes compressed per second on one thread.
//!
//! ```text
//! cargo bench --bench compression -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::content::compress::{Compressed, Encoding, Levels};
use weir::proxy::body::ProxyBody;

/// The 20 KB JSON document of the compression tests.
fn json_20k() -> Bytes {
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
    Bytes::from(s)
}

/// Compresses `body` to its end; returns the compressed size.
fn compress(body: &Bytes, enc: Encoding, levels: Levels) -> usize {
    let mut c = Compressed::new(ProxyBody::full(body.clone(), None), enc, levels);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = 0;
    loop {
        match c.poll_next(&mut cx) {
            Poll::Ready(Some(Ok(f))) => out += f.data_ref().map_or(0, Bytes::len),
            Poll::Ready(Some(Err(e))) => panic!("{e}"),
            Poll::Ready(None) => return out,
            Poll::Pending => unreachable!("an in-memory body is never pending"),
        }
    }
}

fn encoders(c: &mut Criterion) {
    let body = json_20k();
    let mut g = c.benchmark_group("compress_20k_json");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let defaults = Levels::default();
    let gzip1 = Levels {
        gzip: 1,
        ..defaults
    };
    for (name, enc, levels) in [
        ("zstd-3", Encoding::Zstd, defaults),
        ("br-4", Encoding::Br, defaults),
        ("gzip-6", Encoding::Gzip, defaults),
        ("gzip-1", Encoding::Gzip, gzip1),
    ] {
        let size = compress(&body, enc, levels);
        eprintln!("{name}: {} -> {size} bytes", body.len());
        g.bench_function(name, |b| b.iter(|| black_box(compress(&body, enc, levels))));
    }
    g.finish();
}

criterion_group!(benches, encoders);
criterion_main!(benches);
