//! Client certificates on TLS listeners (`listeners[].tls.client_auth`).
//!
//! - `required: true`: rustls' WebPKI client verifier; a handshake without
//!   a certificate that chains to `ca` fails (nginx `ssl_verify_client on`).
//! - `required: false`: the handshake asks for a certificate but takes any
//!   (or none), still checking that the client holds its key (the
//!   handshake signature is verified); after the handshake the chain is
//!   verified against `ca`, and only a verified certificate is forwarded.
//!
//! A verified certificate goes upstream in `x-client-cert`, in the shape of
//! Envoy's `x-forwarded-client-cert` (XFCC):
//! `Hash=<sha256 of the DER, hex>;Subject="<RFC 2253 DN>";URI=<uri SAN>;DNS=<dns SAN>`
//! (one `URI=`/`DNS=` per SAN entry). A client-sent `x-client-cert` is
//! always removed, on every listener, so a server can trust the header.

use std::fmt::Write as _;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::config::edge::ClientAuthConfig;

/// The header carrying the verified client certificate upstream.
pub static X_CLIENT_CERT: HeaderName = HeaderName::from_static("x-client-cert");

/// A listener's client-certificate verification.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The WebPKI verifier over `ca`.
    verifier: Arc<dyn ClientCertVerifier>,
    /// Refuse handshakes without a valid certificate.
    required: bool,
}

impl ClientAuth {
    /// The verification of `config`.
    ///
    /// # Errors
    /// When the CA set cannot make a verifier.
    pub fn new(config: &ClientAuthConfig) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&config.roots), provider)
                .build()
                .map_err(|e| rustls::Error::General(format!("client_auth.ca: {e}")))?;
        Ok(ClientAuth {
            verifier,
            required: config.required,
        })
    }

    /// The verifier the rustls server config uses.
    pub fn handshake_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        if self.required {
            Arc::clone(&self.verifier)
        } else {
            Arc::new(Optional(Arc::clone(&self.verifier)))
        }
    }

    /// The `x-client-cert` value of an established connection whose client
    /// sent `certs` (leaf first): `None` without a certificate or when it
    /// does not verify against `ca`.
    pub fn header_for(&self, certs: Option<&[CertificateDer<'static>]>) -> Option<HeaderValue> {
        let (leaf, intermediates) = certs?.split_first()?;
        if !self.required {
            self.verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .ok()?;
        }
        xfcc(leaf)
    }
}

/// `required: false`: asks for a certificate, accepts any or none at the
/// handshake (signatures still checked); the chain is checked afterwards.
#[derive(Debug)]
struct Optional(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Optional {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The XFCC-shaped value of certificate `der`; `None` when it cannot be parsed.
pub fn xfcc(der: &CertificateDer<'_>) -> Option<HeaderValue> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    let mut out = String::from("Hash=");
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    out.push_str(";Subject=\"");
    for c in rfc2253(cert.subject()).chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        for n in names {
            if let x509_parser::extensions::GeneralName::URI(u) = n {
                let _ = write!(out, ";URI={}", field(u));
            }
        }
        for n in names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                let _ = write!(out, ";DNS={}", field(d));
            }
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// A SAN value as an XFCC field: quoted when it holds `,;="` (Envoy quotes
/// values with those), non-visible characters dropped.
fn field(v: &str) -> String {
    let clean: String = v.chars().filter(|c| c.is_ascii_graphic()).collect();
    if clean.contains([',', ';', '=', '"']) {
        format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        clean
    }
}

/// The distinguished name in RFC 2253 form (most specific RDN first, `,`
/// between RDNs, `+` inside one, specials escaped), as Envoy writes it.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match x509_parser::objects::oid2abbrev(attr.attr_type(), registry) {
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            let value = attr.as_str().unwrap_or("");
            for (k, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (k == 0 && (c == '#' || c == ' '));
                if special {
                    out.push('\\');
                }
                if !c.is_control() {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Removes any client-sent `x-client-cert` and adds the connection's
/// verified one (`cert`), if any. Called for every proxied request.
#[inline]
pub fn apply(headers: &mut HeaderMap, cert: Option<&HeaderValue>) {
    headers.remove(&X_CLIENT_CERT);
    if let Some(v) = cert {
        headers.insert(X_CLIENT_CERT.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_of_an_rcgen_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example.com".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-1");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.com/client".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let v = xfcc(cert.der()).unwrap();
        let v = v.to_str().unwrap();
        assert!(v.starts_with("Hash="), "{v}");
        assert_eq!(v[5..].split(';').next().unwrap().len(), 64, "{v}");
        assert!(
            v.contains(";Subject=\"CN=client-1,O=Acme\\\\, Inc\""),
            "{v}"
        );
        assert!(v.contains(";URI=spiffe://example.com/client"), "{v}");
        assert!(v.ends_with(";DNS=client.example.com"), "{v}");
    }

    #[test]
    fn apply_replaces_a_forged_header() {
        let mut h = HeaderMap::new();
        h.insert("x-client-cert", HeaderValue::from_static("Hash=forged"));
        apply(&mut h, None);
        assert!(h.get("x-client-cert").is_none());
        h.insert("x-client-cert", HeaderValue::from_static("Hash=forged"));
        apply(&mut h, Some(&HeaderValue::from_static("Hash=real")));
        assert_eq!(h.get_all("x-client-cert").iter().count(), 1);
        assert_eq!(h["x-client-cert"], "Hash=real");
    }
}
