//! Bearer-token verification for the `jwt_claims` matcher and `forward_claims`.
//!
//! The token comes from `Authorization: Bearer` (RFC 6750 §2.1) or, when
//! `jwt.cookie` is set, from that cookie; the header wins when both are sent.
//! It is verified with the `jsonwebtoken` crate (aws-lc-rs backend) against
//! the configured keys (RFC 7515 JWS, RFC 7518 algorithms, RFC 7519 claims):
//!
//! - every key pins one algorithm and a token is only checked against keys of
//!   its own `alg`, so an HS256 token can never be checked with an RSA public
//!   key used as an HMAC secret (the classic algorithm confusion); `none` is
//!   not an algorithm the crate can even parse, so it is always rejected;
//! - a token whose `kid` names configured keys is checked against those keys
//!   only; a `kid` that names no key is checked against the keys configured
//!   without a `kid`; a token without `kid` against every key of its `alg`;
//! - `exp` is required and checked, `nbf` is checked, both with `leeway`;
//!   `iss` and `aud` are required and checked when configured;
//! - a header with `crit` is rejected (RFC 7515 §4.1.11: weir understands no
//!   extension), and `jku`/`x5u`/`jwk` are never followed.
//!
//! HAProxy's `jwt_verify` checks the signature only; Envoy's `jwt_authn` is
//! the closest in behavior. Verified tokens are cached (bounded, sharded,
//! keyed by the whole token, never used past `exp` + leeway), so a client
//! that reuses its token costs a hash lookup instead of a signature check.
//! Within one request the token is verified at most once, however many
//! routes look at it ([`RequestToken`]).

use std::cell::OnceCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::matchers;

/// Longest token accepted, in bytes; longer ones are invalid without any work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default number of verified tokens kept in the cache.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// One verification key with the algorithm it is pinned to.
#[derive(Clone)]
pub struct JwtKey {
    /// Key id; when a token's `kid` names it, only keys with that id are tried.
    pub kid: Option<Box<str>>,
    /// The only algorithm this key verifies.
    pub algorithm: Algorithm,
    /// The key material (HMAC secret or public key).
    pub key: DecodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// What the verifier checks besides the signature.
#[derive(Debug, Clone, Default)]
pub struct JwtPolicy {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (or one of the `aud` array), when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (whole seconds count).
    pub leeway: Duration,
    /// Cookie that carries the token when there is no `Authorization: Bearer`.
    pub cookie: Option<Box<str>>,
    /// Most verified tokens cached; 0 disables the cache.
    pub cache_size: usize,
}

/// The claims of a token whose signature and time/issuer/audience checks passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The claims (payload) of the token.
    pub claims: Map<String, Value>,
    /// The token's `exp`, seconds since the Unix epoch.
    pub exp: u64,
}

/// Result of looking at a request's token.
#[derive(Debug, Clone)]
pub enum TokenOutcome {
    /// The request carries no bearer token.
    Absent,
    /// The request carries a token that failed verification.
    Invalid,
    /// The token verified; its claims.
    Valid(Arc<Verified>),
}

struct Entry {
    kid: Option<Box<str>>,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies bearer tokens against the configured keys and caches the results.
/// Built once per config; shared read-only by every connection.
pub struct JwtVerifier {
    keys: Vec<Entry>,
    leeway: u64,
    cookie: Option<Box<str>>,
    cache: Option<quick_cache::sync::Cache<Box<str>, Arc<Verified>>>,
    verifications: AtomicU64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("leeway", &self.leeway)
            .field("cookie", &self.cookie)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier for `keys` under `policy`.
    pub fn new(keys: Vec<JwtKey>, policy: &JwtPolicy) -> Self {
        let leeway = policy.leeway.as_secs();
        let keys = keys
            .into_iter()
            .map(|k| {
                let mut v = Validation::new(k.algorithm);
                v.leeway = leeway;
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(iss) = &policy.issuer {
                    v.set_issuer(&[iss]);
                    required.push("iss");
                }
                // Without a configured audience, the `aud` claim is not looked at.
                v.validate_aud = policy.audience.is_some();
                if let Some(aud) = &policy.audience {
                    v.set_audience(&[aud]);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                Entry {
                    kid: k.kid,
                    algorithm: k.algorithm,
                    key: k.key,
                    validation: v,
                }
            })
            .collect();
        JwtVerifier {
            keys,
            leeway,
            cookie: policy.cookie.clone(),
            cache: (policy.cache_size > 0)
                .then(|| quick_cache::sync::Cache::new(policy.cache_size)),
            verifications: AtomicU64::new(0),
        }
    }

    /// The token a request carries: `Authorization: Bearer TOKEN` (scheme
    /// case-insensitive, RFC 9110 §11.1), else the configured cookie. An
    /// empty `Bearer` credential is returned as `""` (and is invalid).
    pub fn token<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        for value in headers.get_all(header::AUTHORIZATION) {
            let Ok(v) = value.to_str() else { continue };
            let v = v.trim();
            // `to_str` guarantees visible ASCII, so byte slicing is safe.
            if v.len() >= 6 && v[..6].eq_ignore_ascii_case("bearer") {
                let rest = &v[6..];
                if rest.is_empty() || rest.starts_with(' ') {
                    return Some(rest.trim());
                }
            }
        }
        self.cookie
            .as_deref()
            .and_then(|name| matchers::cookie(headers, name))
    }

    /// Verifies `token`, answering from the cache when it holds the token and
    /// the token has not expired.
    pub fn verify(&self, token: &str) -> Option<Arc<Verified>> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(token) {
                if now <= hit.exp.saturating_add(self.leeway) {
                    return Some(hit);
                }
                cache.remove(token);
            }
        }
        let verified = Arc::new(self.verify_uncached(token)?);
        if let Some(cache) = &self.cache {
            cache.insert(token.into(), Arc::clone(&verified));
        }
        Some(verified)
    }

    /// Verifies `token` without the cache: the signature against the
    /// candidate keys (see the module docs), then the claims.
    pub fn verify_uncached(&self, token: &str) -> Option<Verified> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.crit.is_some() {
            return None;
        }
        let alg = header.alg;
        let kid = header.kid.as_deref();
        let kid_known = kid.is_some_and(|t| self.keys.iter().any(|k| k.kid.as_deref() == Some(t)));
        for k in &self.keys {
            if k.algorithm != alg {
                continue;
            }
            let candidate = match (kid, k.kid.as_deref()) {
                (Some(t), Some(mine)) => t == mine,
                (Some(_), None) => !kid_known,
                (None, _) => true,
            };
            if !candidate {
                continue;
            }
            self.verifications.fetch_add(1, Ordering::Relaxed);
            let Ok(data) = jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &k.validation)
            else {
                continue;
            };
            let exp = match data.claims.get("exp") {
                Some(Value::Number(n)) => n
                    .as_u64()
                    .or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))?,
                _ => return None,
            };
            return Some(Verified {
                claims: data.claims,
                exp,
            });
        }
        None
    }

    /// Signature verifications performed so far (cache hits do not count).
    /// For tests and benchmarks.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Verified tokens currently cached.
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    /// Configured keys as (kid, algorithm), in order (config keys, then JWKS keys).
    pub fn keys(&self) -> impl Iterator<Item = (Option<&str>, Algorithm)> + '_ {
        self.keys.iter().map(|k| (k.kid.as_deref(), k.algorithm))
    }
}

/// The token of one request, looked at lazily and at most once: routes
/// without a jwt matcher never trigger it, and every route after the first
/// that does reuses the outcome.
pub struct RequestToken<'a> {
    verifier: &'a JwtVerifier,
    headers: &'a HeaderMap,
    outcome: OnceCell<TokenOutcome>,
}

impl<'a> RequestToken<'a> {
    /// Nothing is read yet.
    pub fn new(verifier: &'a JwtVerifier, headers: &'a HeaderMap) -> Self {
        RequestToken {
            verifier,
            headers,
            outcome: OnceCell::new(),
        }
    }

    /// Extracts and verifies the token on first call; later calls return the same outcome.
    pub fn outcome(&self) -> &TokenOutcome {
        self.outcome
            .get_or_init(|| match self.verifier.token(self.headers) {
                None => TokenOutcome::Absent,
                Some(t) => match self.verifier.verify(t) {
                    Some(v) => TokenOutcome::Valid(v),
                    None => TokenOutcome::Invalid,
                },
            })
    }

    /// The verified claims, if the token is valid.
    pub fn verified(&self) -> Option<&Arc<Verified>> {
        match self.outcome() {
            TokenOutcome::Valid(v) => Some(v),
            _ => None,
        }
    }

    /// True when the token was looked at (by a route or [`Self::outcome`]).
    pub fn evaluated(&self) -> bool {
        self.outcome.get().is_some()
    }
}

impl fmt::Debug for RequestToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestToken")
            .field("outcome", &self.outcome.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn hs(kid: Option<&str>, secret: &str) -> JwtKey {
        JwtKey {
            kid: kid.map(Into::into),
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    fn mint(kid: Option<&str>, secret: &str, claims: Value) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(Into::into);
        encode(&h, &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn exp() -> u64 {
        jsonwebtoken::get_current_timestamp() + 600
    }

    #[test]
    fn token_extraction() {
        let v = JwtVerifier::new(
            vec![],
            &JwtPolicy {
                cookie: Some("jwt".into()),
                ..Default::default()
            },
        );
        let mut h = HeaderMap::new();
        assert_eq!(v.token(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; jwt=abc"));
        assert_eq!(v.token(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bEaReR  xyz "),
        );
        assert_eq!(v.token(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(v.token(&h), Some(""));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearerx y"));
        assert_eq!(v.token(&h), Some("abc"));
    }

    #[test]
    fn kid_selection_and_cache() {
        let v = JwtVerifier::new(
            vec![hs(Some("a"), "secret-a"), hs(None, "secret-plain")],
            &JwtPolicy {
                cache_size: 16,
                ..Default::default()
            },
        );
        // kid "a" names a key: only that key is tried.
        let t = mint(Some("a"), "secret-a", json!({"exp": exp()}));
        assert!(v.verify(&t).is_some());
        assert_eq!(v.verifications(), 1);
        // Cached: no second verification.
        assert!(v.verify(&t).is_some());
        assert_eq!(v.verifications(), 1);
        // kid "a" with the plain key's secret: the plain key is not tried.
        let t = mint(Some("a"), "secret-plain", json!({"exp": exp()}));
        assert!(v.verify(&t).is_none());
        assert_eq!(v.verifications(), 2);
        // An unknown kid falls back to the keys without kid.
        let t = mint(Some("zz"), "secret-plain", json!({"exp": exp()}));
        assert!(v.verify(&t).is_some());
        // No kid: every HS256 key is tried.
        let t = mint(None, "secret-plain", json!({"exp": exp()}));
        let before = v.verifications();
        assert!(v.verify(&t).is_some());
        assert_eq!(v.verifications(), before + 2);
        // exp is required.
        let t = mint(None, "secret-a", json!({"sub": "x"}));
        assert!(v.verify(&t).is_none());
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let v = JwtVerifier::new(
            vec![hs(None, "s")],
            &JwtPolicy {
                issuer: Some("https://auth".into()),
                audience: Some("api".into()),
                ..Default::default()
            },
        );
        let ok = mint(
            None,
            "s",
            json!({"exp": exp(), "iss": "https://auth", "aud": ["x", "api"]}),
        );
        assert!(v.verify(&ok).is_some());
        let no_iss = mint(None, "s", json!({"exp": exp(), "aud": "api"}));
        assert!(v.verify(&no_iss).is_none());
        let no_aud = mint(None, "s", json!({"exp": exp(), "iss": "https://auth"}));
        assert!(v.verify(&no_aud).is_none());
        // Without a configured audience, any aud is fine.
        let v = JwtVerifier::new(vec![hs(None, "s")], &JwtPolicy::default());
        let t = mint(None, "s", json!({"exp": exp(), "aud": "other"}));
        assert!(v.verify(&t).is_some());
    }

    #[test]
    fn crit_header_is_rejected() {
        let v = JwtVerifier::new(vec![hs(None, "s")], &JwtPolicy::default());
        let mut h = Header::new(Algorithm::HS256);
        h.crit = Some(vec!["b64".into()]);
        let t = encode(&h, &json!({"exp": exp()}), &EncodingKey::from_secret(b"s")).unwrap();
        assert!(v.verify(&t).is_none());
        assert!(v.verify("not.a.token").is_none());
        assert!(v.verify("").is_none());
    }
}
