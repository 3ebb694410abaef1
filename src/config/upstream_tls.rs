//! `groups.*.protocol` and `groups.*.tls`: how weir talks to a group's
//! servers. The rustls client config is built here, once per group and per
//! load, so a bad `ca`, `client_cert` or `client_key` is a config error naming
//! its key, and connections share one session cache (TLS resumption).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

use super::validate::Errors;
use super::Spanned;

/// `groups.*.tls` as written: TLS (and optionally mutual TLS) to the servers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// PEM file of the CA certificates that sign the servers' certificates;
    /// absent = the system's trust roots (rustls-native-certs).
    pub ca: Option<Spanned<PathBuf>>,
    /// The name sent as SNI and verified in the server's certificate
    /// (a DNS name or an IP address); absent = each server's host.
    pub server_name: Option<Spanned<String>>,
    /// `true` = no certificate check at all (warned at start). Default `false`.
    pub insecure_skip_verify: Option<bool>,
    /// PEM certificate chain weir presents to the servers (mutual TLS);
    /// needs `client_key`.
    pub client_cert: Option<Spanned<PathBuf>>,
    /// PEM private key of `client_cert` (PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<Spanned<PathBuf>>,
}

/// The protocol spoken to a group's servers (`groups.*.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// `http1` (default): HTTP/1.1 on pooled keep-alive connections.
    #[default]
    Http1,
    /// `http2`: h2 by ALPN over `tls`, h2c with prior knowledge without it
    /// (RFC 9113 §3.3); streams multiplexed on a few connections per server.
    Http2,
}

impl UpstreamProtocol {
    /// The config name (`http1`, `http2`).
    pub fn name(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::Http2 => "http2",
        }
    }
}

/// A group's validated TLS client settings: rustls configs built once (their
/// session cache is shared by every connection of the group, so reconnects
/// resume sessions), and the SNI/verified name when one is configured.
#[derive(Debug, Clone)]
pub struct UpstreamTlsConfig {
    /// Client config offering ALPN `http/1.1` (HTTP/1.1 groups and HTTP probes).
    pub http1: Arc<ClientConfig>,
    /// The same config offering ALPN `h2` (HTTP/2 groups and gRPC probes).
    pub http2: Arc<ClientConfig>,
    /// `server_name`: SNI and the name verified; `None` = each server's host.
    pub server_name: Option<ServerName<'static>>,
    /// `insecure_skip_verify`.
    pub insecure: bool,
    /// Unique per build of this config (never 0): pooled connections made
    /// with other TLS settings (before a reload) are not reused.
    pub id: u64,
}

impl UpstreamTlsConfig {
    /// The client config for `protocol`.
    pub fn client_config(&self, protocol: UpstreamProtocol) -> &Arc<ClientConfig> {
        match protocol {
            UpstreamProtocol::Http1 => &self.http1,
            UpstreamProtocol::Http2 => &self.http2,
        }
    }
}

/// Validates `groups.NAME.protocol`.
pub(super) fn protocol(
    raw: Option<&Spanned<String>>,
    key: &str,
    errs: &mut Errors,
) -> UpstreamProtocol {
    let Some(p) = raw else {
        return UpstreamProtocol::Http1;
    };
    match p.value.as_str() {
        "http1" => UpstreamProtocol::Http1,
        "http2" => UpstreamProtocol::Http2,
        other => {
            errs.at(
                Some(&p.referenced),
                format!("{key}.protocol"),
                format!("unknown protocol {other:?}; expected http1 or http2"),
            );
            UpstreamProtocol::Http1
        }
    }
}

/// Validates `groups.NAME.tls` (at `key` = `groups.NAME`) and builds its
/// rustls client configs. `base` anchors relative paths.
pub(super) fn tls(
    raw: &Spanned<RawUpstreamTls>,
    key: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<UpstreamTlsConfig> {
    let key = format!("{key}.tls");
    let t = &raw.value;
    let before = errs.list.len();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let insecure = t.insecure_skip_verify.unwrap_or(false);

    let roots = roots(raw, &key, insecure, base, errs);
    let server_name = server_name(t, &key, errs);
    let client_auth = client_auth(t, &key, base, &provider, errs);
    if errs.list.len() > before {
        return None;
    }
    let roots = roots?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .ok()?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(Arc::clone(&provider))))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match client_auth {
        Some((chain, key_der)) => match builder.with_client_auth_cert(chain, key_der) {
            Ok(c) => c,
            Err(e) => {
                let loc = t.client_key.as_ref().map(|k| &k.referenced);
                errs.at(
                    loc,
                    format!("{key}.client_key"),
                    format!("does not fit client_cert: {e}"),
                );
                return None;
            }
        },
        None => builder.with_no_client_auth(),
    };
    // Session resumption (tickets and TLS 1.3 PSK) uses rustls's default
    // in-memory client cache; both configs below share it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut h2 = config.clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    Some(UpstreamTlsConfig {
        http1: Arc::new(config),
        http2: Arc::new(h2),
        server_name,
        insecure,
        id: next_id(),
    })
}

/// `tls.ca`, or the system's roots (none needed with `insecure_skip_verify`).
fn roots(
    raw: &Spanned<RawUpstreamTls>,
    key: &str,
    insecure: bool,
    base: &Path,
    errs: &mut Errors,
) -> Option<RootCertStore> {
    let t = &raw.value;
    match &t.ca {
        Some(ca) => {
            let file = base.join(&ca.value);
            match super::load::load_roots(&file, "CA certificate") {
                Ok(r) => Some(r),
                Err(m) => {
                    errs.at(
                        Some(&ca.referenced),
                        format!("{key}.ca"),
                        format!("{}: {m}", file.display()),
                    );
                    None
                }
            }
        }
        None if insecure => Some(RootCertStore::empty()),
        None => match system_roots() {
            Ok(r) => Some(r),
            Err(m) => {
                errs.at(Some(&raw.referenced), format!("{key}.ca"), m);
                None
            }
        },
    }
}

/// `tls.server_name`: a DNS name or an IP address.
fn server_name(t: &RawUpstreamTls, key: &str, errs: &mut Errors) -> Option<ServerName<'static>> {
    t.server_name
        .as_ref()
        .and_then(|n| match ServerName::try_from(n.value.trim().to_string()) {
            Ok(name) if !n.value.trim().is_empty() => Some(name),
            _ => {
                errs.at(
                    Some(&n.referenced),
                    format!("{key}.server_name"),
                    format!("{:?} is not a DNS name or an IP address", n.value),
                );
                None
            }
        })
}

/// `tls.client_cert` and `tls.client_key`: both or neither.
fn client_auth(
    t: &RawUpstreamTls,
    key: &str,
    base: &Path,
    provider: &Arc<CryptoProvider>,
    errs: &mut Errors,
) -> Option<ClientAuth> {
    match (&t.client_cert, &t.client_key) {
        (None, None) => None,
        (Some(c), None) => {
            errs.at(
                Some(&c.referenced),
                format!("{key}.client_key"),
                "client_cert needs client_key",
            );
            None
        }
        (None, Some(k)) => {
            errs.at(
                Some(&k.referenced),
                format!("{key}.client_cert"),
                "client_key needs client_cert",
            );
            None
        }
        (Some(c), Some(k)) => load_client_auth(c, k, base, key, provider, errs),
    }
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Logs the `insecure_skip_verify` warning of group `group`, once per
/// process (reloads do not repeat it).
pub fn warn_insecure_once(group: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut warned = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if warned.insert(group.to_string()) {
        tracing::warn!(
            group = %group,
            "groups.{group}.tls.insecure_skip_verify is true: server certificates are NOT verified \
             (anyone on the path can impersonate these servers)"
        );
    }
}

/// The system's trust roots, loaded once per process (rustls-native-certs
/// reads `SSL_CERT_FILE`/`SSL_CERT_DIR` or the distribution's bundle).
fn system_roots() -> Result<RootCertStore, String> {
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(String::new, |e| format!(": {e}"));
                return Err(format!(
                    "no ca given and no usable system trust roots found{why}; set ca: to a PEM file"
                ));
            }
            Ok(roots)
        })
        .clone()
}

type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_client_auth(
    cert: &Spanned<PathBuf>,
    key_path: &Spanned<PathBuf>,
    base: &Path,
    key: &str,
    provider: &CryptoProvider,
    errs: &mut Errors,
) -> Option<ClientAuth> {
    let cert_file = base.join(&cert.value);
    let key_file = base.join(&key_path.value);
    let chain = super::read::read_key_file(&cert_file).and_then(|pem| {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("invalid PEM certificate: {e}"))?;
        if chain.is_empty() {
            return Err("no CERTIFICATE block in the file".to_string());
        }
        Ok(chain)
    });
    let chain = match chain {
        Ok(c) => Some(c),
        Err(m) => {
            errs.at(
                Some(&cert.referenced),
                format!("{key}.client_cert"),
                format!("{}: {m}", cert_file.display()),
            );
            None
        }
    };
    let der = super::read::read_key_file(&key_file).and_then(|pem| {
        let der = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| format!("cannot read private key: {e}"))?;
        provider
            .key_provider
            .load_private_key(der.clone_key())
            .map_err(|e| format!("unusable private key: {e}"))?;
        Ok(der)
    });
    let der = match der {
        Ok(d) => Some(d),
        Err(m) => {
            errs.at(
                Some(&key_path.referenced),
                format!("{key}.client_key"),
                format!("{}: {m}", key_file.display()),
            );
            None
        }
    };
    Some((chain?, der?))
}

/// `insecure_skip_verify: true`: accepts any certificate, but still checks
/// that the server holds its key (handshake signatures), as curl `-k` does.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
