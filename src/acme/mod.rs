//! Automatic certificates (`listeners[].tls.acme`, RFC 8555) with
//! [instant-acme](https://docs.rs/instant-acme): one task per ACME listener
//! on the control runtime loads the certificate from `storage` or orders one
//! (HTTP-01 answered on every plain listener, or TLS-ALPN-01 on the
//! listener itself, RFC 8737), stores it atomically, installs it in the
//! listener's certificate resolver, and renews it `renew_before` expiry
//! with exponential backoff on failure. See `docs/acme.md`.

pub mod challenge;
pub mod client;
pub mod storage;
mod task;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

pub use challenge::http01_response;
pub use task::run;

use crate::config::acme::{AcmeChallenge, AcmeConfig};
use crate::tls::SniResolver;

/// The ACME side of one TLS listener: the issued certificate and the
/// pending TLS-ALPN-01 answers, shared by its resolver and its task.
#[derive(Debug)]
pub struct AcmeState {
    listener: Arc<str>,
    config: Arc<AcmeConfig>,
    issued: ArcSwapOption<CertifiedKey>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    warned: AtomicBool,
}

impl AcmeState {
    /// The state of listener `listener` with `config`; no certificate yet.
    pub fn new(listener: &Arc<str>, config: &Arc<AcmeConfig>) -> Arc<Self> {
        Arc::new(AcmeState {
            listener: Arc::clone(listener),
            config: Arc::clone(config),
            issued: ArcSwapOption::empty(),
            alpn: RwLock::new(HashMap::new()),
            warned: AtomicBool::new(false),
        })
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The `tls.acme` settings.
    pub fn config(&self) -> &AcmeConfig {
        &self.config
    }

    /// The certificate now served for the ACME domains, if any.
    pub fn issued(&self) -> Option<Arc<CertifiedKey>> {
        self.issued.load_full()
    }

    /// Serves `key` for the ACME domains from the next handshake on.
    pub fn install(&self, key: Arc<CertifiedKey>) {
        self.issued.store(Some(key));
    }

    fn set_alpn(&self, domain: &str, key: Option<Arc<CertifiedKey>>) {
        let mut map = self.alpn.write().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => map.insert(domain.to_owned(), k),
            None => map.remove(domain),
        };
    }

    fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.config
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(name))
    }
}

/// The certificate resolver of an ACME listener: the TLS-ALPN-01 answer for
/// a ClientHello offering `acme-tls/1`, the issued certificate for the ACME
/// domains, the configured `certificates` (if any) otherwise. With nothing
/// to serve the handshake fails with an `access_denied` alert (logged once).
#[derive(Debug)]
pub struct AcmeResolver {
    state: Arc<AcmeState>,
    fallback: Option<SniResolver>,
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        let acme_tls = hello
            .alpn()
            .is_some_and(|mut p| p.any(|p| p == challenge::ACME_TLS_ALPN));
        if acme_tls {
            let name = sni?.trim_end_matches('.').to_ascii_lowercase();
            let found = self
                .state
                .alpn
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
            if found.is_some() {
                tracing::info!(listener = %self.state.listener, domain = %name, "answering an ACME TLS-ALPN-01 challenge");
            }
            return found;
        }
        let issued = self.state.issued.load_full();
        let ours = sni.is_none_or(|n| self.state.covers(n));
        match (&issued, &self.fallback) {
            (Some(k), _) if ours => Some(Arc::clone(k)),
            (_, Some(f)) => Some(f.pick(sni)),
            (Some(k), None) => Some(Arc::clone(k)),
            (None, None) => {
                if !self.state.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        listener = %self.state.listener,
                        domains = ?self.state.config.domains,
                        "TLS handshake refused: no ACME certificate yet (ordering; see the acme log lines)"
                    );
                }
                None
            }
        }
    }
}

/// The rustls server config of ACME listener `state`, with the configured
/// `keys` (may be empty) as the fallback, `client_auth` as the listener's,
/// and ALPN `h2`, `http/1.1` (+ `acme-tls/1` for TLS-ALPN-01).
///
/// # Errors
/// When the protocol versions are not supported by the provider.
pub fn server_config(
    state: &Arc<AcmeState>,
    keys: &[Arc<CertifiedKey>],
    client_auth: Option<&crate::tls::client_auth::ClientAuth>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let resolver = AcmeResolver {
        state: Arc::clone(state),
        fallback: SniResolver::new(keys),
    };
    let mut config = crate::tls::with_resolver(Arc::new(resolver), client_auth)?;
    if state.config.challenge == AcmeChallenge::TlsAlpn01 {
        config
            .alpn_protocols
            .push(challenge::ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}
