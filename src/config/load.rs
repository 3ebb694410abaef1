//! The I/O of loading a config: reading the file, resolving the bind
//! addresses named in it, loading certificates, keys and trust roots.
//! Validation ([`super::validate`]) calls these; the listener's certificate
//! watcher and ACME reuse [`load_certified_key`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{load_str, read, Config, ConfigError, ConfigErrors};

/// Parses a listener address: `ip:port`, `[v6]:port`, or `name:port` resolved now.
pub(super) fn resolve_bind_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{s:?} is not host:port"));
    }
    (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// The value of environment variable `name` (a secret or token named by the
/// config); the error says why there is none: `is not set` or `is not valid UTF-8`.
///
/// # Errors
/// When the variable is unset or not UTF-8.
pub(super) fn env_var(name: &str) -> Result<String, &'static str> {
    std::env::var(name).map_err(|e| match e {
        std::env::VarError::NotPresent => "is not set",
        std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
    })
}

/// Largest config file accepted, in bytes (a guard against feeding weir a wrong file).
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// Reads, parses and validates the config file at `path`.
///
/// Relative paths inside the file resolve against the file's directory.
///
/// # Errors
/// Every problem found, each naming the file, line, column and key.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let one = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }])
    };
    // A regular file only, at most MAX_CONFIG_BYTES, checked while reading
    // (`/dev/zero` or a FIFO fail at once).
    let text = read::read_bounded(path, MAX_CONFIG_BYTES as u64).map_err(one)?;
    let text = String::from_utf8(text).map_err(|e| one(format!("not UTF-8: {e}")))?;
    load_str(&text, path)
}

/// Why a certificate pair could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    /// The certificate file is missing, unreadable or not PEM certificates.
    Cert(String),
    /// The key file is missing, unreadable, not a supported PEM key, or does
    /// not match the certificate.
    Key(String),
}

/// Loads a PEM certificate chain (leaf first) and its PEM private key
/// (PKCS#8, PKCS#1 or SEC1) with the default crypto provider (aws-lc-rs).
///
/// # Errors
/// [`CertError`] naming which file is at fault.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    // Bounded reads of regular files only (`super::read`): a FIFO or
    // `/dev/zero` named as a certificate fails at once.
    let cert_pem = super::read::read_key_file(cert).map_err(CertError::Cert)?;
    let key_pem = super::read::read_key_file(key).map_err(CertError::Key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Cert(format!("invalid PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::Cert("no CERTIFICATE block in the file".into()));
    }
    webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| CertError::Cert(format!("invalid certificate: {e}")))?;
    let der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| CertError::Key(format!("cannot read private key: {e}")))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, der, &provider)
        .map_err(|e| CertError::Key(format!("unusable private key: {e}")))
}

/// Reads the PEM certificates of `path` into a root store (`what` names
/// them in errors: `certificate`, `CA certificate`).
///
/// # Errors
/// When the file is unreadable or holds no usable certificate.
pub fn load_roots(path: &Path, what: &str) -> Result<RootCertStore, String> {
    let pem = read::read_key_file(path)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("invalid PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable {what}: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CERTIFICATE block in the file".into());
    }
    Ok(roots)
}
