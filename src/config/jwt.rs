//! The `jwt` section: raw structs as written, and their validation into a
//! [`JwtVerifier`] (keys loaded and checked at load time, so a bad PEM file,
//! an unknown algorithm or a missing environment variable is a config error
//! with its line and column, not a failure on the first request).

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::signature::{self as lc, ParsedPublicKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::validate::Errors;
use crate::route::jwt::{JwtKey, JwtPolicy, JwtVerifier, DEFAULT_CACHE_SIZE};

/// Largest `leeway` accepted.
pub const MAX_LEEWAY: Duration = Duration::from_secs(24 * 3600);
/// Largest key or JWKS file read, in bytes.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// The `jwt` section: keys and checks for bearer tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// Verification keys, each pinned to one algorithm.
    #[serde(default)]
    pub keys: Vec<RawJwtKey>,
    /// A JWKS file (RFC 7517 JSON Web Key Set) with more keys.
    pub jwks_file: Option<Spanned<PathBuf>>,
    /// Required `iss` claim, when set.
    pub issuer: Option<Spanned<String>>,
    /// Required `aud` claim (or one of an `aud` array), when set.
    pub audience: Option<Spanned<String>>,
    /// Clock skew allowed on `exp` and `nbf` (default `0s`, at most `24h`).
    pub leeway: Option<Spanned<super::HumanDuration>>,
    /// Cookie that carries the token when there is no `Authorization: Bearer`.
    pub cookie: Option<Spanned<String>>,
    /// Most verified tokens cached (default 10000; 0 disables the cache).
    pub cache_size: Option<Spanned<usize>>,
}

/// One key of `jwt.keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtKey {
    /// Key id; a token with this `kid` is checked only against this key.
    pub kid: Option<Spanned<String>>,
    /// HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA.
    pub algorithm: Spanned<String>,
    /// HS*: the secret itself.
    pub secret: Option<Spanned<String>>,
    /// HS*: name of an environment variable holding the secret.
    pub secret_env: Option<Spanned<String>>,
    /// HS*: file holding the secret (one trailing newline is ignored).
    pub secret_file: Option<Spanned<PathBuf>>,
    /// RS*/PS*/ES*/EdDSA: PEM public key (SubjectPublicKeyInfo, or PKCS#1 for RSA).
    pub public_key_file: Option<Spanned<PathBuf>>,
}

/// A claim value in `match.jwt_claims`: string, number or boolean.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawClaimValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string; `"*"` means present with any value.
    Str(String),
}

/// Parses a JOSE algorithm name (RFC 7518 §3.1), case-sensitive.
fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    if s.eq_ignore_ascii_case("none") {
        return Err("\"none\" is never accepted: tokens must be signed".into());
    }
    s.parse::<Algorithm>().map_err(|_| {
        format!(
            "unknown algorithm {s:?}; expected one of HS256, HS384, HS512, RS256, RS384, RS512, \
             PS256, PS384, PS512, ES256, ES384, EdDSA"
        )
    })
}

/// Validates the `jwt` section into a verifier. `None` after recording errors.
pub(super) fn build(raw: &Spanned<RawJwt>, base: &Path, errs: &mut Errors) -> Option<JwtVerifier> {
    let before = errs.list.len();
    let r = &raw.value;
    let mut keys = Vec::new();
    for (i, k) in r.keys.iter().enumerate() {
        if let Some(key) = config_key(k, i, base, errs) {
            keys.push(key);
        }
    }
    if let Some(f) = &r.jwks_file {
        let path = base.join(&f.value);
        match read_limited(&path).and_then(|bytes| jwks_keys(&bytes)) {
            Ok(more) if more.is_empty() => errs.at(
                Some(&f.referenced),
                "jwt.jwks_file",
                format!("{}: no usable signature key", path.display()),
            ),
            Ok(more) => keys.extend(more),
            Err(e) => errs.at(
                Some(&f.referenced),
                "jwt.jwks_file",
                format!("{}: {e}", path.display()),
            ),
        }
    }
    if r.keys.is_empty() && r.jwks_file.is_none() {
        errs.at(
            Some(&raw.referenced),
            "jwt.keys",
            "at least one key (jwt.keys or jwt.jwks_file) is required",
        );
    }
    let nonempty = |v: &Option<Spanned<String>>, key: &str, errs: &mut Errors| {
        v.as_ref().and_then(|s| {
            if s.value.is_empty() {
                errs.at(Some(&s.referenced), key, "must not be empty");
                None
            } else {
                Some(s.value.clone())
            }
        })
    };
    let issuer = nonempty(&r.issuer, "jwt.issuer", errs);
    let audience = nonempty(&r.audience, "jwt.audience", errs);
    let cookie = nonempty(&r.cookie, "jwt.cookie", errs);
    if let (Some(c), Some(name)) = (&r.cookie, &cookie) {
        if !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            errs.at(Some(&c.referenced), "jwt.cookie", "not a valid cookie name");
        }
    }
    let leeway = r.leeway.as_ref().map_or(Duration::ZERO, |d| d.value.0);
    if leeway > MAX_LEEWAY {
        errs.at(Some(&raw.referenced), "jwt.leeway", "must be at most 24h");
    }
    let cache_size = r
        .cache_size
        .as_ref()
        .map_or(DEFAULT_CACHE_SIZE, |c| c.value);
    if errs.list.len() > before {
        return None;
    }
    Some(JwtVerifier::new(
        keys,
        &JwtPolicy {
            issuer,
            audience,
            leeway,
            cookie: cookie.map(Into::into),
            cache_size,
        },
    ))
}

fn config_key(k: &RawJwtKey, i: usize, base: &Path, errs: &mut Errors) -> Option<JwtKey> {
    let key = format!("jwt.keys[{i}]");
    let algorithm = match parse_algorithm(&k.algorithm.value) {
        Ok(a) => a,
        Err(m) => {
            errs.at(Some(&k.algorithm.referenced), format!("{key}.algorithm"), m);
            return None;
        }
    };
    let kid = match &k.kid {
        Some(kid) if kid.value.is_empty() => {
            errs.at(
                Some(&kid.referenced),
                format!("{key}.kid"),
                "must not be empty",
            );
            return None;
        }
        kid => kid.as_ref().map(|k| Box::<str>::from(k.value.as_str())),
    };
    let secrets = [
        k.secret.as_ref().map(|s| &s.referenced),
        k.secret_env.as_ref().map(|s| &s.referenced),
        k.secret_file.as_ref().map(|s| &s.referenced),
    ];
    let n_secrets = secrets.iter().flatten().count();
    let decoding = if algorithm.family() == AlgorithmFamily::Hmac {
        hmac_key(k, algorithm, n_secrets, &key, base, errs)?
    } else {
        if let Some(loc) = secrets.iter().flatten().next() {
            errs.at(
                Some(loc),
                &key,
                format!("{algorithm:?} keys take public_key_file, not a secret"),
            );
            return None;
        }
        public_key(k, algorithm, &key, base, errs)?
    };
    Some(JwtKey {
        kid,
        algorithm,
        key: decoding,
    })
}

/// The decoding key of an HMAC `jwt.keys[i]` (`key`), from exactly one of
/// `secret`, `secret_env`, `secret_file`.
fn hmac_key(
    k: &RawJwtKey,
    algorithm: Algorithm,
    n_secrets: usize,
    key: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<DecodingKey> {
    if let Some(p) = &k.public_key_file {
        errs.at(
            Some(&p.referenced),
            format!("{key}.public_key_file"),
            format!("{algorithm:?} keys take secret, secret_env or secret_file"),
        );
        return None;
    }
    if n_secrets != 1 {
        errs.at(
            Some(&k.algorithm.referenced),
            key,
            format!("{algorithm:?} needs exactly one of secret, secret_env, secret_file"),
        );
        return None;
    }
    let (secret, loc, skey) = hmac_secret(k, key, base, errs)?;
    if secret.is_empty() {
        errs.at(Some(loc), format!("{key}.{skey}"), "the secret is empty");
        return None;
    }
    let min = match algorithm {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    };
    if secret.len() < min {
        // RFC 7518 §3.2 asks for a key at least as long as the hash output.
        tracing::warn!(
            key = %key,
            bytes = secret.len(),
            "{algorithm:?} secret is shorter than {min} bytes (RFC 7518 §3.2); use a longer random secret outside development"
        );
    }
    Some(DecodingKey::from_secret(&secret))
}

/// The secret bytes of an HMAC key, its location and its key name.
fn hmac_secret<'a>(
    k: &'a RawJwtKey,
    key: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<(Vec<u8>, &'a serde_saphyr::Location, &'static str)> {
    let found = if let Some(s) = &k.secret {
        (s.value.clone().into_bytes(), &s.referenced, "secret")
    } else if let Some(s) = &k.secret_env {
        match super::load::env_var(&s.value) {
            Ok(v) => (v.into_bytes(), &s.referenced, "secret_env"),
            Err(_) => {
                errs.at(
                    Some(&s.referenced),
                    format!("{key}.secret_env"),
                    format!(
                        "environment variable {:?} is not set (or not UTF-8)",
                        s.value
                    ),
                );
                return None;
            }
        }
    } else {
        let s = k.secret_file.as_ref()?;
        let path = base.join(&s.value);
        match read_limited(&path) {
            Ok(mut v) => {
                if v.ends_with(b"\n") {
                    v.pop();
                    if v.ends_with(b"\r") {
                        v.pop();
                    }
                }
                (v, &s.referenced, "secret_file")
            }
            Err(e) => {
                errs.at(
                    Some(&s.referenced),
                    format!("{key}.secret_file"),
                    format!("{}: {e}", path.display()),
                );
                return None;
            }
        }
    };
    Some(found)
}

/// The decoding key of an RSA, EC or EdDSA `jwt.keys[i]`, from `public_key_file`.
fn public_key(
    k: &RawJwtKey,
    algorithm: Algorithm,
    key: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<DecodingKey> {
    let Some(p) = &k.public_key_file else {
        errs.at(
            Some(&k.algorithm.referenced),
            format!("{key}.public_key_file"),
            format!("{algorithm:?} needs public_key_file (a PEM public key)"),
        );
        return None;
    };
    let path = base.join(&p.value);
    match read_limited(&path).and_then(|pem| public_key_from_pem(algorithm, &pem)) {
        Ok(k) => Some(k),
        Err(e) => {
            errs.at(
                Some(&p.referenced),
                format!("{key}.public_key_file"),
                format!("{}: {e}", path.display()),
            );
            None
        }
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    super::read::read_bounded(path, MAX_KEY_FILE_BYTES)
}

/// Loads a PEM public key for `algorithm` and checks that aws-lc accepts it.
fn public_key_from_pem(algorithm: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let key = match algorithm.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => return Err("HMAC keys are secrets".into()),
    }
    .map_err(|e| format!("not a PEM public key for {algorithm:?}: {e}"))?;
    check_key(algorithm, &key)?;
    Ok(key)
}

/// Checks that `key` parses as a public key of `algorithm`'s kind and size,
/// the way aws-lc will use it when verifying.
pub fn check_key(algorithm: Algorithm, key: &DecodingKey) -> Result<(), String> {
    if key.family() != algorithm.family() {
        return Err(format!("the key does not fit algorithm {algorithm:?}"));
    }
    match (algorithm.family(), key.kind()) {
        (AlgorithmFamily::Hmac, _) => Ok(()),
        (AlgorithmFamily::Rsa, kind) => {
            let bits = match kind {
                DecodingKeyKind::SecretOrDer(der) => {
                    aws_lc_rs::rsa::PublicKey::from_der(der)
                        .map_err(|e| format!("not an RSA public key: {e}"))?
                        .modulus_len()
                        * 8
                }
                DecodingKeyKind::RsaModulusExponent { n, .. } => {
                    n.iter().skip_while(|b| **b == 0).count() * 8
                }
            };
            if !(2048..=8192).contains(&bits) {
                return Err(format!("RSA key of {bits} bits; 2048 to 8192 are accepted"));
            }
            Ok(())
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            let lc_alg: &'static dyn lc::VerificationAlgorithm = match algorithm {
                Algorithm::ES384 => &lc::ECDSA_P384_SHA384_FIXED,
                _ => &lc::ECDSA_P256_SHA256_FIXED,
            };
            ParsedPublicKey::new(lc_alg, point)
                .map(drop)
                .map_err(|e| format!("not a valid {algorithm:?} public key (wrong curve?): {e}"))
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(raw)) => {
            ParsedPublicKey::new(&lc::ED25519, raw)
                .map(drop)
                .map_err(|e| format!("not a valid Ed25519 public key: {e}"))
        }
        _ => Err(format!("the key does not fit algorithm {algorithm:?}")),
    }
}

/// The signature keys of a JWKS document (RFC 7517 §5). Keys marked for
/// encryption (`use: enc`, RSA-OAEP) are skipped. A key without `alg` gets
/// the one its type implies (EC P-256 → ES256, P-384 → ES384, Ed25519 →
/// EdDSA, RSA → RS256); an `oct` key must name its `alg`.
fn jwks_keys(bytes: &[u8]) -> Result<Vec<JwtKey>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let at = |m: String| format!("keys[{i}]: {m}");
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = match jwk.common.key_algorithm {
            Some(KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256) => {
                continue
            }
            Some(a) => {
                Algorithm::try_from(a).map_err(|_| at(format!("unsupported algorithm {a}")))?
            }
            None => implied_algorithm(jwk).ok_or_else(|| at("\"alg\" is required".into()))?,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| at(format!("invalid key: {e}")))?;
        check_key(algorithm, &key).map_err(at)?;
        keys.push(JwtKey {
            kid: jwk.common.key_id.as_deref().map(Into::into),
            algorithm,
            key,
        });
    }
    Ok(keys)
}

fn implied_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(p) => {
            matches!(p.curve, EllipticCurve::Ed25519).then_some(Algorithm::EdDSA)
        }
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms() {
        assert_eq!(parse_algorithm("RS256").unwrap(), Algorithm::RS256);
        assert_eq!(parse_algorithm("EdDSA").unwrap(), Algorithm::EdDSA);
        assert!(parse_algorithm("none").unwrap_err().contains("never"));
        assert!(parse_algorithm("NONE").is_err());
        assert!(parse_algorithm("HS999").unwrap_err().contains("unknown"));
    }

    #[test]
    fn jwks_parsing() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg"},
            {"kty":"RSA","use":"enc","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}
        ]}"#;
        let keys = jwks_keys(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].algorithm, Algorithm::HS256);
        assert!(jwks_keys(br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#)
            .unwrap_err()
            .contains("alg"));
        // A 32-bit RSA modulus is refused.
        assert!(
            jwks_keys(br#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#)
                .unwrap_err()
                .contains("bits")
        );
        assert!(jwks_keys(b"[]").is_err());
    }
}
