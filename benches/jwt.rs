//! Bearer-token verification cost per request: HS256, RS256 and ES256, cold
//! (cache disabled: a signature check and claim checks on every request) and
//! cached (a reused token: one sharded-cache lookup plus the `exp` check).
//!
//! ```text
//! cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, DecodingKey, EncodingKey, Header};
use weir::route::jwt::{JwtKey, JwtPolicy, JwtVerifier};

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "user-1234", "iss": "https://auth.example.com", "aud": "api",
        "exp": get_current_timestamp() + 3600, "region": "eu", "roles": ["dev", "admin"],
    })
}

/// (algorithm, signing key, verification key) for each benchmarked algorithm.
fn keys() -> Vec<(Algorithm, EncodingKey, DecodingKey)> {
    let rsa_key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/jwt-rsa.key"
    ))
    .expect("tests/data/jwt-rsa.key");
    let rsa_pub = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/jwt-rsa.pub.pem"
    ))
    .expect("tests/data/jwt-rsa.pub.pem");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    vec![
        (
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
            DecodingKey::from_secret(SECRET),
        ),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&rsa_key).expect("RSA key"),
            DecodingKey::from_rsa_pem(&rsa_pub).expect("RSA public key"),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("EC key"),
            DecodingKey::from_ec_pem(ec.public_key_pem().as_bytes()).expect("EC public key"),
        ),
    ]
}

fn verifier(alg: Algorithm, key: DecodingKey, cache_size: usize) -> JwtVerifier {
    JwtVerifier::new(
        vec![JwtKey {
            kid: None,
            algorithm: alg,
            key,
        }],
        &JwtPolicy {
            issuer: Some("https://auth.example.com".into()),
            audience: Some("api".into()),
            leeway: Duration::ZERO,
            cookie: None,
            cache_size,
        },
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_verify");
    for (alg, enc, dec) in keys() {
        let token = encode(&Header::new(alg), &claims(), &enc).expect("token");
        let cold = verifier(alg, dec.clone(), 0);
        assert!(cold.verify(&token).is_some(), "{alg:?} token verifies");
        group.bench_function(format!("{alg:?}/cold"), |b| {
            b.iter(|| black_box(cold.verify(black_box(&token))))
        });
        let cached = verifier(alg, dec, 10_000);
        assert!(cached.verify(&token).is_some());
        group.bench_function(format!("{alg:?}/cached"), |b| {
            b.iter(|| black_box(cached.verify(black_box(&token))))
        });
        assert_eq!(cached.verifications(), 1, "cached runs never re-verify");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
