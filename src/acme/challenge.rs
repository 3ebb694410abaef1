//! Challenge answers: HTTP-01 key authorizations served on every plain
//! listener (RFC 8555 §8.3), and TLS-ALPN-01 certificates (RFC 8737).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Path prefix of HTTP-01 challenges.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Pending HTTP-01 tokens of every ACME task of the process: token → key authorization.
static HTTP01: LazyLock<RwLock<HashMap<String, String>>> = LazyLock::new(Default::default);

/// Publishes the key authorization of `token` until [`remove_http01`].
pub fn add_http01(token: &str, key_authorization: &str) {
    HTTP01
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.to_owned(), key_authorization.to_owned());
}

/// Withdraws `token`.
pub fn remove_http01(token: &str) {
    HTTP01
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(token);
}

/// The answer to an HTTP-01 validation request, before routing: 200 with
/// the key authorization for a pending token, 404 for an unknown one under
/// the prefix, `None` (route as usual) for any other path. The body type is
/// the caller's (the proxy's `ProxyBody`), made from the key authorization.
pub fn http01_response<B, O: From<Bytes>>(req: &Request<B>) -> Option<Response<O>> {
    let token = req.uri().path().strip_prefix(HTTP01_PREFIX)?;
    let found = HTTP01
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(token)
        .cloned();
    let (status, body) = match found {
        Some(ka) => (StatusCode::OK, Bytes::from(ka)),
        // Not ours: an application might serve its own challenges.
        None => return None,
    };
    tracing::info!(token, "answering an ACME HTTP-01 challenge");
    let mut rsp = Response::new(O::from(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Some(rsp)
}

/// The self-signed TLS-ALPN-01 certificate for `domain`: its only SAN is
/// `domain` and its critical acmeIdentifier extension holds `digest`, the
/// SHA-256 of the key authorization (RFC 8737 §3).
///
/// # Errors
/// When rcgen or rustls refuse the generated key or certificate.
pub fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its key check parses the certificate
    // with webpki, which refuses the (critical) acmeIdentifier extension.
    let signer = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_only_known_tokens() {
        add_http01("tok-1", "tok-1.thumb");
        let req = |p: &str| Request::get(p).body(()).unwrap();
        let r: Response<Bytes> =
            http01_response(&req("/.well-known/acme-challenge/tok-1")).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(http01_response::<_, Bytes>(&req("/.well-known/acme-challenge/other")).is_none());
        assert!(http01_response::<_, Bytes>(&req("/index.html")).is_none());
        remove_http01("tok-1");
        assert!(http01_response::<_, Bytes>(&req("/.well-known/acme-challenge/tok-1")).is_none());
    }

    #[test]
    fn alpn_certificate_has_acme_identifier() {
        let ck = alpn_certificate("a.test", &[7u8; 32]).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&ck.cert[0]).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        assert!(ext.value.ends_with(&[7u8; 32]));
    }
}
