//! TLS termination: the SNI resolver, the rustls
//! server config (TLS 1.2 and 1.3 only; ALPN `h2` and `http/1.1`) and client
//! certificates ([`client_auth`]). Below `listener` and `acme`, which both
//! build server configs from it.

pub mod client_auth;

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

pub use crate::config::load::{load_certified_key, CertError};

/// Picks a certificate by the SNI name of the ClientHello, matched against the
/// DNS names of each certificate's subjectAltName (exact names first, then
/// wildcards, then the first certificate as the default).
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver over `keys`; the first is the default. `keys` must not be empty.
    pub fn new(keys: &[Arc<CertifiedKey>]) -> Option<Self> {
        let default = keys.first()?.clone();
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        for key in keys {
            let Some(leaf) = key.cert.first() else {
                continue;
            };
            let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
                continue;
            };
            for name in ee.valid_dns_names() {
                let name = name.to_ascii_lowercase();
                if let Some(suffix) = name.strip_prefix("*.") {
                    wildcard.push((format!(".{suffix}"), key.clone()));
                } else {
                    exact.entry(name).or_insert_with(|| key.clone());
                }
            }
        }
        Some(SniResolver {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for `server_name` (or the default).
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return k.clone();
            }
            for (suffix, k) in &self.wildcard {
                // A wildcard covers exactly one label (RFC 6125 §6.4.3).
                if let Some(label) = name.strip_suffix(suffix.as_str()) {
                    if !label.is_empty() && !label.contains('.') {
                        return k.clone();
                    }
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The rustls server config of a TLS listener with `keys`.
///
/// # Errors
/// When `keys` is empty or the protocol versions are not supported by the provider.
pub fn server_config(keys: &[Arc<CertifiedKey>]) -> Result<Arc<ServerConfig>, rustls::Error> {
    server_config_with(keys, None)
}

/// [`server_config`] verifying client certificates with `client_auth`
/// (`tls.client_auth`; `None` = none asked).
///
/// # Errors
/// As [`server_config`].
pub fn server_config_with(
    keys: &[Arc<CertifiedKey>],
    client_auth: Option<&client_auth::ClientAuth>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let resolver = SniResolver::new(keys)
        .ok_or_else(|| rustls::Error::General("no certificate configured".into()))?;
    with_resolver(Arc::new(resolver), client_auth).map(Arc::new)
}

/// The rustls server config of a listener whose certificates come from
/// `resolver` (the SNI resolver, or ACME's wrapping it): TLS 1.3 and 1.2,
/// client certificates per `client_auth`, ALPN `h2` then `http/1.1`.
///
/// # Errors
/// When the protocol versions are not supported by the provider.
pub fn with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
    client_auth: Option<&client_auth::ClientAuth>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(match client_auth {
            Some(c) => c.handshake_verifier(),
            None => Arc::new(rustls::server::NoClientAuth),
        })
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
