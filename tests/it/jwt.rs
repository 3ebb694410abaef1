//! Routing on verified JWT claims, query parameters, cookies and header
//! regexes (issue 6). Tokens are minted here with jsonwebtoken; keys are
//! generated per test (rcgen) except the RSA test key in tests/data.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

const HS_SECRET: &str = "test-secret-that-is-32-bytes-long!!";
const ISSUER: &str = "https://auth.test";
const AUDIENCE: &str = "api";

fn now() -> u64 {
    get_current_timestamp()
}

/// Standard valid claims plus `extra`.
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    c
}

fn mint(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(Into::into);
    encode(&h, claims, key).expect("token encodes")
}

fn hs(claims: &Value) -> String {
    mint(
        Algorithm::HS256,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
        None,
        claims,
    )
}

fn rsa_private() -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(path("tests/data/jwt-rsa.key")).unwrap()).unwrap()
}

/// A unique temp file with `contents`; its absolute path.
fn temp_file(name: &str, contents: &[u8]) -> TempFile {
    TempFile::new("jwt", name, contents)
}

/// GET `path` on `addr` with extra request headers.
async fn get_with(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(Full::new(Bytes::new())).unwrap()).await
}

async fn bearer(addr: std::net::SocketAddr, path: &str, token: &str) -> Reply {
    get_with(addr, path, &[("authorization", &format!("Bearer {token}"))]).await
}

fn group(name: &str, up: &Upstream) -> String {
    format!("  {name}:\n    servers:\n{}", servers_yaml(&[(up, 1)]))
}

/// The main fixture: HS256 + RS256 (kid rsa1) keys, issuer and audience;
/// routes by region, roles, a nested claim, a header-gated fallback for
/// /profile, and /open without any jwt matcher.
struct Fixture {
    proxy: weir::Running,
    eu: Upstream,
    us: Upstream,
    admin: Upstream,
    gold: Upstream,
    anon: Upstream,
    open: Upstream,
}

async fn fixture() -> Fixture {
    let eu = spawn_upstream("eu").await;
    let us = spawn_upstream("us").await;
    let admin = spawn_upstream("admin").await;
    let gold = spawn_upstream("gold").await;
    let anon = spawn_upstream("anon").await;
    let open = spawn_upstream("open").await;
    let yaml = format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
jwt:
  keys:
    - algorithm: HS256
      secret: "{HS_SECRET}"
    - kid: rsa1
      algorithm: RS256
      public_key_file: tests/data/jwt-rsa.pub.pem
  issuer: {ISSUER}
  audience: {AUDIENCE}
routes:
  - match:
      path_prefix: /profile
      jwt_claims:
        region: eu
    group: eu
  - match:
      path_prefix: /profile
      jwt_claims:
        region: us
    group: us
  - match:
      path_prefix: /admin
      jwt_claims:
        roles: admin
    group: admin
  - match:
      path_prefix: /nested
      jwt_claims:
        realm_access.tier: gold
        realm_access.level: 3
        verified: true
    group: gold
  - match:
      path_prefix: /profile
      headers:
        x-fallback: "*"
    group: anon
  - match:
      path_prefix: /open
    group: open
groups:
{}
{}
{}
{}
{}
{}
"#,
        group("eu", &eu),
        group("us", &us),
        group("admin", &admin),
        group("gold", &gold),
        group("anon", &anon),
        group("open", &open),
    );
    let proxy = start_proxy(&yaml).await;
    Fixture {
        proxy,
        eu,
        us,
        admin,
        gold,
        anon,
        open,
    }
}

fn assert_invalid_token(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(
        reply.headers.get("www-authenticate").unwrap(),
        "Bearer error=\"invalid_token\""
    );
}

#[tokio::test]
async fn region_claim_routes_to_different_groups() {
    let f = fixture().await;
    let addr = f.proxy.local_addr("http").unwrap();
    let eu = hs(&claims(json!({"region": "eu"})));
    let us = hs(&claims(json!({"region": "us"})));
    for _ in 0..3 {
        assert_eq!(
            bearer(addr, "/profile/me", &eu).await.server().as_deref(),
            Some("eu")
        );
        assert_eq!(
            bearer(addr, "/profile/me", &us).await.server().as_deref(),
            Some("us")
        );
    }
    assert_eq!((f.eu.hits(), f.us.hits()), (3, 3));
    // A valid token whose claims match no route: 404, not 401.
    let ap = hs(&claims(json!({"region": "ap"})));
    assert_eq!(bearer(addr, "/profile/me", &ap).await.status, 404);
    // No token at all: 404 (nothing invalid was presented).
    assert_eq!(get(addr, "/profile/me").await.status, 404);
    // The RS256 key (kid rsa1) works as well.
    let rs = mint(
        Algorithm::RS256,
        &rsa_private(),
        Some("rsa1"),
        &claims(json!({"region": "eu"})),
    );
    assert_eq!(
        bearer(addr, "/profile", &rs).await.server().as_deref(),
        Some("eu")
    );
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn array_claim_contains_and_nested_claims() {
    let f = fixture().await;
    let addr = f.proxy.local_addr("http").unwrap();
    let admin = hs(&claims(json!({"roles": ["dev", "admin"]})));
    let dev = hs(&claims(json!({"roles": ["dev"]})));
    assert_eq!(
        bearer(addr, "/admin", &admin).await.server().as_deref(),
        Some("admin")
    );
    assert_eq!(bearer(addr, "/admin", &dev).await.status, 404);
    let gold = hs(&claims(
        json!({"realm_access": {"tier": "gold", "level": 3}, "verified": true}),
    ));
    let silver = hs(&claims(
        json!({"realm_access": {"tier": "silver", "level": 3}, "verified": true}),
    ));
    let unverified = hs(&claims(
        json!({"realm_access": {"tier": "gold", "level": 3}, "verified": false}),
    ));
    assert_eq!(
        bearer(addr, "/nested", &gold).await.server().as_deref(),
        Some("gold")
    );
    assert_eq!(bearer(addr, "/nested", &silver).await.status, 404);
    assert_eq!(bearer(addr, "/nested", &unverified).await.status, 404);
    assert_eq!(f.admin.hits(), 1);
    assert_eq!(f.gold.hits(), 1);
    assert!(f.proxy.shutdown().await);
}

/// base64url without padding.
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn invalid_tokens_fall_through_and_end_in_401() {
    let f = fixture().await;
    let addr = f.proxy.local_addr("http").unwrap();
    let eu = json!({"region": "eu"});
    let other_secret = EncodingKey::from_secret(b"another-secret-another-secret-1234");
    let rsa_pub_pem = std::fs::read(path("tests/data/jwt-rsa.pub.pem")).unwrap();
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(eu.clone()).to_string().as_bytes())
    );
    let bad: Vec<(&str, String)> = vec![
        (
            "expired",
            hs(&claims(json!({"region": "eu", "exp": now() - 120}))),
        ),
        (
            "not yet valid",
            hs(&claims(json!({"region": "eu", "nbf": now() + 600}))),
        ),
        (
            "wrong issuer",
            hs(&claims(json!({"region": "eu", "iss": "https://evil"}))),
        ),
        (
            "wrong audience",
            hs(&claims(json!({"region": "eu", "aud": "other"}))),
        ),
        ("no exp", {
            let mut c = claims(eu.clone());
            c.as_object_mut().unwrap().remove("exp");
            hs(&c)
        }),
        (
            "bad signature",
            mint(Algorithm::HS256, &other_secret, None, &claims(eu.clone())),
        ),
        ("alg none", unsigned),
        (
            // HS256 "signed" with the RS256 public key as the HMAC secret.
            "algorithm confusion",
            mint(
                Algorithm::HS256,
                &EncodingKey::from_secret(&rsa_pub_pem),
                Some("rsa1"),
                &claims(eu.clone()),
            ),
        ),
        (
            "algorithm confusion without kid",
            mint(
                Algorithm::HS256,
                &EncodingKey::from_secret(&rsa_pub_pem),
                None,
                &claims(eu.clone()),
            ),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, token) in &bad {
        // Falls through the jwt routes to the next route that matches...
        let r = get_with(
            addr,
            "/profile/me",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-fallback", "1"),
            ],
        )
        .await;
        assert_eq!(r.server().as_deref(), Some("anon"), "{what}");
        // ...and when nothing else matches: 401 with the RFC 6750 challenge.
        assert_invalid_token(&bearer(addr, "/profile/me", token).await);
        // A route without jwt matchers does not care about the token.
        assert_eq!(
            bearer(addr, "/open", token).await.server().as_deref(),
            Some("open"),
            "{what}"
        );
    }
    assert_eq!(f.eu.hits() + f.us.hits(), 0);
    assert_eq!(f.anon.hits(), bad.len());
    assert_eq!(f.open.hits(), bad.len());
    // An empty bearer credential is an invalid token too.
    assert_invalid_token(&get_with(addr, "/profile", &[("authorization", "Bearer")]).await);
    // Another scheme is not a bearer token: 404.
    let basic = get_with(addr, "/profile", &[("authorization", "Basic dTpw")]).await;
    assert_eq!(basic.status, 404);
    assert!(f.proxy.shutdown().await);
}

#[tokio::test]
async fn rs256_es256_and_eddsa_keys() {
    let es = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let es_other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let es_pub = temp_file("es256.pub.pem", es.public_key_pem().as_bytes());
    let ed_pub = temp_file("ed25519.pub.pem", ed.public_key_pem().as_bytes());
    let up = spawn_upstream("g").await;
    let proxy = start_proxy(&format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
jwt:
  keys:
    - algorithm: RS256
      public_key_file: tests/data/jwt-rsa.pub.pem
    - algorithm: ES256
      public_key_file: {}
    - algorithm: EdDSA
      public_key_file: {}
routes:
  - match:
      jwt_claims:
        sub: "*"
    group: g
groups:
{}
"#,
        es_pub.display(),
        ed_pub.display(),
        group("g", &up)
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let c = json!({"sub": "u", "exp": now() + 600});
    let es_key = EncodingKey::from_ec_pem(es.serialize_pem().as_bytes()).unwrap();
    let ed_key = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
    let other = EncodingKey::from_ec_pem(es_other.serialize_pem().as_bytes()).unwrap();
    for (alg, key) in [
        (Algorithm::RS256, &rsa_private()),
        (Algorithm::ES256, &es_key),
        (Algorithm::EdDSA, &ed_key),
    ] {
        let r = bearer(addr, "/x", &mint(alg, key, None, &c)).await;
        assert_eq!(r.status, 200, "{alg:?}");
    }
    // Same algorithm, key not configured.
    assert_invalid_token(&bearer(addr, "/x", &mint(Algorithm::ES256, &other, None, &c)).await);
    // RS256 key used for PS256 is not accepted: the key is pinned to RS256.
    assert_invalid_token(
        &bearer(
            addr,
            "/x",
            &mint(Algorithm::PS256, &rsa_private(), None, &c),
        )
        .await,
    );
    assert_eq!(up.hits(), 3);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn kid_selects_the_key() {
    let up = spawn_upstream("g").await;
    let proxy = start_proxy(&format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
jwt:
  cache_size: 0
  keys:
    - kid: k1
      algorithm: HS256
      secret: "first-secret-first-secret-first-secret"
    - kid: k2
      algorithm: HS256
      secret: "second-secret-second-secret-second-sec"
routes:
  - match:
      jwt_claims:
        sub: "*"
    group: g
groups:
{}
"#,
        group("g", &up)
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let snapshot = proxy.snapshot();
    let verifier = snapshot.routes.jwt().unwrap();
    let k2 = EncodingKey::from_secret(b"second-secret-second-secret-second-sec");
    let c = json!({"sub": "u", "exp": now() + 600});
    // kid k2: exactly one key tried, and it verifies.
    let before = verifier.verifications();
    assert_eq!(
        bearer(addr, "/", &mint(Algorithm::HS256, &k2, Some("k2"), &c))
            .await
            .status,
        200
    );
    assert_eq!(verifier.verifications() - before, 1);
    // kid k1 with k2's secret: only k1 is tried, so it fails.
    let before = verifier.verifications();
    assert_invalid_token(&bearer(addr, "/", &mint(Algorithm::HS256, &k2, Some("k1"), &c)).await);
    assert_eq!(verifier.verifications() - before, 1);
    // No kid: each HS256 key is tried (k1 fails, k2 verifies).
    let before = verifier.verifications();
    assert_eq!(
        bearer(addr, "/", &mint(Algorithm::HS256, &k2, None, &c))
            .await
            .status,
        200
    );
    assert_eq!(verifier.verifications() - before, 2);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn jwks_file_keys() {
    let es = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let es_key = EncodingKey::from_ec_pem(es.serialize_pem().as_bytes()).unwrap();
    let mut es_jwk = Jwk::from_encoding_key(&es_key, Algorithm::ES256).unwrap();
    es_jwk.common.key_id = Some("ec-1".into());
    let rsa_pub = jsonwebtoken::DecodingKey::from_rsa_pem(
        &std::fs::read(path("tests/data/jwt-rsa.pub.pem")).unwrap(),
    )
    .unwrap();
    let mut rsa_jwk = Jwk::from_decoding_key(&rsa_pub, None).unwrap();
    rsa_jwk.common.key_id = Some("rsa-1".into());
    let set = JwkSet {
        keys: vec![es_jwk, rsa_jwk],
    };
    let jwks = temp_file(
        "keys.jwks.json",
        serde_json::to_string(&set).unwrap().as_bytes(),
    );
    let up = spawn_upstream("g").await;
    let proxy = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\njwt:\n  jwks_file: {}\nroutes:\n  - match:\n      jwt_claims:\n        tenant: acme\n    group: g\ngroups:\n{}\n",
        jwks.display(),
        group("g", &up)
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let c = json!({"tenant": "acme", "exp": now() + 600});
    assert_eq!(
        bearer(
            addr,
            "/",
            &mint(Algorithm::ES256, &es_key, Some("ec-1"), &c)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        bearer(
            addr,
            "/",
            &mint(Algorithm::RS256, &rsa_private(), Some("rsa-1"), &c)
        )
        .await
        .status,
        200
    );
    // The EC key under the RSA key's kid: only rsa-1 is tried (and its alg is RS256).
    assert_invalid_token(
        &bearer(
            addr,
            "/",
            &mint(Algorithm::ES256, &es_key, Some("rsa-1"), &c),
        )
        .await,
    );
    assert_eq!(up.hits(), 2);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn forward_claims_set_headers_and_strip_client_copies() {
    let up = spawn_upstream("g").await;
    let proxy = start_proxy(&format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
jwt:
  keys:
    - algorithm: HS256
      secret: "{HS_SECRET}"
routes:
  - match:
      path_prefix: /api
    forward_claims:
      sub: x-user-id
      region: x-region
      roles: x-roles
    group: g
groups:
{}
"#,
        group("g", &up)
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let token =
        hs(&json!({"sub": "user-7", "region": "eu", "roles": ["a", "b"], "exp": now() + 600}));
    let r = get_with(
        addr,
        "/api/x",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-user-id", "forged"),
            ("x-region", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last_seen().unwrap().headers;
    assert_eq!(
        seen.get_all("x-user-id").iter().collect::<Vec<_>>(),
        ["user-7"]
    );
    assert_eq!(seen.get_all("x-region").iter().collect::<Vec<_>>(), ["eu"]);
    assert_eq!(seen.get("x-roles").unwrap(), "a,b");
    // No token (the route has no jwt matcher, so it still matches): the
    // forged headers are stripped and nothing is set.
    let r = get_with(
        addr,
        "/api/x",
        &[("x-user-id", "forged"), ("x-roles", "admin")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last_seen().unwrap().headers;
    assert!(seen.get("x-user-id").is_none());
    assert!(seen.get("x-roles").is_none());
    // An invalid token: the same.
    let expired = hs(&json!({"sub": "user-7", "exp": now() - 100}));
    let r = get_with(
        addr,
        "/api/x",
        &[
            ("authorization", &format!("Bearer {expired}")),
            ("x-user-id", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(up.last_seen().unwrap().headers.get("x-user-id").is_none());
    assert!(proxy.shutdown().await);
}

fn cache_yaml(cache_size: usize, a: &Upstream, b: &Upstream) -> String {
    format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
jwt:
  cache_size: {cache_size}
  keys:
    - algorithm: HS256
      secret: "{HS_SECRET}"
routes:
  - match:
      jwt_claims:
        region: eu
    group: a
  - match:
      jwt_claims:
        region: us
    group: b
groups:
{}
{}
"#,
        group("a", a),
        group("b", b)
    )
}

#[tokio::test]
async fn verified_once_per_request_and_cached_across_requests() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    // Without the cache: a token seen by two routes is verified once per request.
    let proxy = start_proxy(&cache_yaml(0, &a, &b)).await;
    let addr = proxy.local_addr("http").unwrap();
    let snapshot = proxy.snapshot();
    let verifier = snapshot.routes.jwt().unwrap();
    let us = hs(&claims(json!({"region": "us"})));
    for i in 1..=3 {
        assert_eq!(bearer(addr, "/", &us).await.server().as_deref(), Some("b"));
        assert_eq!(verifier.verifications(), i);
    }
    assert_eq!(verifier.cached(), 0);
    assert!(proxy.shutdown().await);

    // With the cache: the second and later requests cost no verification.
    let proxy = start_proxy(&cache_yaml(100, &a, &b)).await;
    let addr = proxy.local_addr("http").unwrap();
    let snapshot = proxy.snapshot();
    let verifier = snapshot.routes.jwt().unwrap();
    for _ in 0..5 {
        assert_eq!(bearer(addr, "/", &us).await.server().as_deref(), Some("b"));
    }
    assert_eq!(verifier.verifications(), 1);
    assert_eq!(verifier.cached(), 1);
    // A different token is a miss.
    let eu = hs(&claims(json!({"region": "eu"})));
    assert_eq!(bearer(addr, "/", &eu).await.server().as_deref(), Some("a"));
    assert_eq!(verifier.verifications(), 2);
    // Invalid tokens are never cached, and a bad one is checked every time.
    let expired = hs(&claims(json!({"region": "eu", "exp": now() - 100})));
    assert_invalid_token(&bearer(addr, "/", &expired).await);
    assert_invalid_token(&bearer(addr, "/", &expired).await);
    assert_eq!(verifier.verifications(), 4);
    assert_eq!(verifier.cached(), 2);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn cached_token_is_not_used_past_exp() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let proxy = start_proxy(&cache_yaml(100, &a, &b)).await;
    let addr = proxy.local_addr("http").unwrap();
    // Expires within 2 s (exp has one-second resolution).
    let short = hs(&claims(json!({"region": "eu", "exp": now() + 1})));
    assert_eq!(bearer(addr, "/", &short).await.status, 200);
    let mut expired = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if bearer(addr, "/", &short).await.status == StatusCode::UNAUTHORIZED {
            expired = true;
            break;
        }
    }
    assert!(expired, "a cached token must stop working after exp");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn token_from_cookie() {
    let up = spawn_upstream("g").await;
    let proxy = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\njwt:\n  cookie: session\n  keys:\n    - algorithm: HS256\n      secret: \"{HS_SECRET}\"\nroutes:\n  - match:\n      jwt_claims:\n        region: eu\n    group: g\ngroups:\n{}\n",
        group("g", &up)
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let eu = hs(&claims(json!({"region": "eu"})));
    let cookie = format!("theme=dark; session={eu}");
    assert_eq!(
        get_with(addr, "/", &[("cookie", &cookie)]).await.status,
        200
    );
    assert_invalid_token(&get_with(addr, "/", &[("cookie", "session=garbage")]).await);
    assert_eq!(
        get_with(addr, "/", &[("cookie", "other=1")]).await.status,
        404
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn query_cookie_and_header_regex_matchers() {
    let beta = spawn_upstream("beta").await;
    let canary = spawn_upstream("canary").await;
    let mobile = spawn_upstream("mobile").await;
    let tracked = spawn_upstream("tracked").await;
    let rest = spawn_upstream("rest").await;
    let proxy = start_proxy(&format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
routes:
  - match:
      query:
        tier: beta
        q: "a b"
    group: beta
  - match:
      cookies:
        canary: "true"
    group: canary
  - match:
      headers:
        user-agent: "~(?i)(android|iphone)"
    group: mobile
  - match:
      headers:
        x-trace-id: "*"
      query:
        debug: "~^[0-9]+$"
    group: tracked
  - group: rest
groups:
{}
{}
{}
{}
{}
"#,
        group("beta", &beta),
        group("canary", &canary),
        group("mobile", &mobile),
        group("tracked", &tracked),
        group("rest", &rest)
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let srv = |r: Reply| r.server().unwrap_or_default();
    assert_eq!(srv(get(addr, "/?x=1&tier=beta&q=a+b").await), "beta");
    assert_eq!(srv(get(addr, "/?tier=beta&q=a%20b").await), "beta");
    assert_eq!(srv(get(addr, "/?tier=beta").await), "rest");
    assert_eq!(srv(get(addr, "/?tier=betax&q=a+b").await), "rest");
    assert_eq!(
        srv(get_with(addr, "/", &[("cookie", "a=1; canary=true")]).await),
        "canary"
    );
    assert_eq!(
        srv(get_with(addr, "/", &[("cookie", "canary=false")]).await),
        "rest"
    );
    let ua = "Mozilla/5.0 (Linux; Android 14)";
    assert_eq!(
        srv(get_with(addr, "/", &[("user-agent", ua)]).await),
        "mobile"
    );
    assert_eq!(
        srv(get_with(addr, "/", &[("user-agent", "curl/8")]).await),
        "rest"
    );
    assert_eq!(
        srv(get_with(addr, "/?debug=42", &[("x-trace-id", "t")]).await),
        "tracked"
    );
    assert_eq!(
        srv(get_with(addr, "/?debug=4x", &[("x-trace-id", "t")]).await),
        "rest"
    );
    assert_eq!(srv(get(addr, "/?debug=42").await), "rest");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn curl_with_bearer_token_end_to_end() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("NOTICE: curl not found; skipping the curl end-to-end test");
        return;
    }
    let f = fixture().await;
    let addr = f.proxy.local_addr("http").unwrap();
    let eu = hs(&claims(json!({"region": "eu"})));
    let run = |token: String| {
        let url = format!("http://{addr}/profile/me");
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("curl")
                .args(["-s", "-i", "--max-time", "10", "-H"])
                .arg(format!("Authorization: Bearer {token}"))
                .arg(url)
                .output()
                .expect("curl runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let out = run(eu).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-server: eu"), "{out}");
    let out = run("garbage.token.here".into()).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(out.contains("Bearer error=\"invalid_token\""), "{out}");
    assert_eq!(f.eu.hits(), 1);
    assert!(f.proxy.shutdown().await);
}

/// Config errors name the file, line, column and key.
#[test]
fn config_errors_are_located() {
    let check = |yaml: &str, want: &[&str]| {
        let err = weir::config::load_str(yaml, &root().join("test.yaml"))
            .expect_err("config must be rejected")
            .to_string();
        for w in want {
            assert!(err.contains(w), "missing {w:?} in:\n{err}");
        }
    };
    let base = "listeners:\n  - address: 127.0.0.1:0\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:1\n";
    check(
        &format!(
            "{base}routes:\n  - match:\n      jwt_claims:\n        region: eu\n    group: g\n"
        ),
        &[
            "test.yaml:10:9: routes[0].match.jwt_claims",
            "needs a top-level jwt section",
        ],
    );
    check(
        &format!(
            "{base}jwt:\n  keys:\n    - algorithm: none\n      secret: x\nroutes:\n  - group: g\n"
        ),
        &["test.yaml:9:18: jwt.keys[0].algorithm", "never accepted"],
    );
    check(
        &format!(
            "{base}jwt:\n  keys:\n    - algorithm: HS257\n      secret: x\nroutes:\n  - group: g\n"
        ),
        &["test.yaml:9:18: jwt.keys[0].algorithm", "unknown algorithm"],
    );
    check(
        &format!("{base}jwt:\n  keys:\n    - algorithm: HS256\n      secret_env: WEIR_TEST_SURELY_UNSET_VAR\nroutes:\n  - group: g\n"),
        &["test.yaml:10:19: jwt.keys[0].secret_env", "WEIR_TEST_SURELY_UNSET_VAR"],
    );
    check(
        &format!("{base}jwt:\n  keys:\n    - algorithm: RS256\n      public_key_file: Cargo.toml\nroutes:\n  - group: g\n"),
        &["test.yaml:10:24: jwt.keys[0].public_key_file", "not a PEM public key"],
    );
    // An RSA key for an ES256 key entry.
    check(
        &format!("{base}jwt:\n  keys:\n    - algorithm: ES256\n      public_key_file: tests/data/jwt-rsa.pub.pem\nroutes:\n  - group: g\n"),
        &["jwt.keys[0].public_key_file"],
    );
    check(
        &format!("{base}jwt:\n  keys:\n    - algorithm: RS256\n      secret: abc\nroutes:\n  - group: g\n"),
        &["jwt.keys[0]", "public_key_file"],
    );
    check(
        &format!("{base}jwt:\n  jwks_file: nope.json\nroutes:\n  - group: g\n"),
        &["test.yaml:8:14: jwt.jwks_file", "cannot read"],
    );
    check(
        &format!("{base}routes:\n  - match:\n      headers:\n        user-agent: \"~(unclosed\"\n    group: g\n"),
        &["routes[0].match.headers.user-agent", "invalid regular expression"],
    );
    check(
        &format!("{base}routes:\n  - match:\n      query:\n        a: \"~[\"\n    group: g\n"),
        &["routes[0].match.query.a", "invalid regular expression"],
    );
    check(
        &format!("{base}jwt:\n  keys:\n    - algorithm: HS256\n      secret: \"0123456789abcdef0123456789abcdef\"\nroutes:\n  - forward_claims:\n      sub: host\n    group: g\n"),
        &["routes[0].forward_claims.sub", "managed by weir"],
    );
}

/// Routes without a jwt matcher (or whose cheaper matchers fail first) never
/// verify the token.
#[tokio::test]
async fn routes_without_jwt_matchers_do_not_verify() {
    let f = fixture().await;
    let addr = f.proxy.local_addr("http").unwrap();
    let snapshot = f.proxy.snapshot();
    let verifier = snapshot.routes.jwt().unwrap();
    let token = hs(&claims(json!({"region": "eu"})));
    // /open is the last route: the four jwt routes before it fail on their path first.
    for _ in 0..3 {
        assert_eq!(
            bearer(addr, "/open", &token).await.server().as_deref(),
            Some("open")
        );
    }
    assert_eq!(verifier.verifications(), 0);
    assert_eq!(verifier.cached(), 0);
    assert_eq!(
        bearer(addr, "/profile", &token).await.server().as_deref(),
        Some("eu")
    );
    assert_eq!(verifier.verifications(), 1);
    assert!(f.proxy.shutdown().await);
}
