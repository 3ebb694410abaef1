//! `listeners[].tls.acme`: automatic certificates (ACME, RFC 8555). The raw
//! struct, the validated [`AcmeConfig`] and its checks (hooked from
//! `validate.rs`); the client itself is the top-level `acme` module.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::validate::Errors;
use super::{RawCertificate, Spanned};

/// Default `renew_before`: renew 30 days before expiry (certbot's default).
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// `listeners[].tls.acme`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The ACME directory URL (`https://…/directory`).
    pub directory: Spanned<String>,
    /// DNS names of the certificate (the first is its name in `storage`).
    pub domains: Spanned<Vec<String>>,
    /// Account contacts, e.g. `mailto:ops@example.com` (optional).
    #[serde(default)]
    pub contact: Vec<String>,
    /// `http-01` (default; answered on every plain listener) or
    /// `tls-alpn-01` (RFC 8737, answered on this listener).
    pub challenge: Option<Spanned<String>>,
    /// PEM trust root(s) of the directory's HTTPS (test CAs such as Pebble);
    /// absent = the system's trust store.
    pub directory_ca: Option<Spanned<PathBuf>>,
    /// Directory of the account key and issued certificates, reused across
    /// restarts and shared by instances (created when missing).
    pub storage: Spanned<PathBuf>,
    /// Renew this long before the certificate expires (default `30d`).
    pub renew_before: Option<Spanned<super::HumanDuration>>,
}

/// How the ACME server validates control of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// HTTP-01 (RFC 8555 §8.3): `/.well-known/acme-challenge/<token>` on port 80.
    Http01,
    /// TLS-ALPN-01 (RFC 8737): a handshake with ALPN `acme-tls/1` on port 443.
    TlsAlpn01,
}

/// Validated `tls.acme` of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// Directory URL.
    pub directory: String,
    /// Names of the certificate (lowercase, at least one).
    pub domains: Vec<String>,
    /// Account contacts.
    pub contact: Vec<String>,
    /// Challenge type.
    pub challenge: AcmeChallenge,
    /// PEM trust roots for the directory (`None` = system store).
    pub directory_ca: Option<PathBuf>,
    /// Storage directory (absolute or relative to the config file).
    pub storage: PathBuf,
    /// Renew this long before expiry.
    pub renew_before: Duration,
}

/// Serde default of `tls.certificates`: none (allowed when `acme` is set).
pub fn no_certificates() -> Spanned<Vec<RawCertificate>> {
    Spanned::new(
        Vec::new(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// Validates `tls.acme` of listener `key` (`listeners[i]`).
pub(super) fn acme(
    raw: Option<&RawAcme>,
    key: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<Arc<AcmeConfig>> {
    let raw = raw?;
    let key = format!("{key}.tls.acme");
    let dir = raw.directory.value.trim();
    if !dir.starts_with("https://") {
        errs.at(
            Some(&raw.directory.referenced),
            format!("{key}.directory"),
            "must be an https:// URL",
        );
    }
    let domains = domains(raw, &key, errs);
    let challenge = challenge(raw, &key, errs);
    let directory_ca = raw.directory_ca.as_ref().and_then(|p| {
        let path = base.join(&p.value);
        match super::load::load_roots(&path, "certificate") {
            Ok(_) => Some(path),
            Err(e) => {
                errs.at(
                    Some(&p.referenced),
                    format!("{key}.directory_ca"),
                    format!("{}: {e}", path.display()),
                );
                None
            }
        }
    });
    let renew_before = match raw.renew_before.as_ref().map(|d| d.value.0) {
        None => DEFAULT_RENEW_BEFORE,
        Some(d) if d.is_zero() => {
            errs.at(
                Some(&raw.directory.referenced),
                format!("{key}.renew_before"),
                "must be more than 0s",
            );
            DEFAULT_RENEW_BEFORE
        }
        Some(d) => d,
    };
    Some(Arc::new(AcmeConfig {
        directory: dir.to_owned(),
        domains,
        contact: raw.contact.clone(),
        challenge,
        directory_ca,
        storage: base.join(&raw.storage.value),
        renew_before,
    }))
}

/// `domains`: at least one DNS name, lowercased, duplicates dropped.
fn domains(raw: &RawAcme, key: &str, errs: &mut Errors) -> Vec<String> {
    if raw.domains.value.is_empty() {
        errs.at(
            Some(&raw.domains.referenced),
            format!("{key}.domains"),
            "at least one domain is required",
        );
    }
    let mut domains = Vec::new();
    for (i, d) in raw.domains.value.iter().enumerate() {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            errs.at(
                Some(&raw.domains.referenced),
                format!("{key}.domains[{i}]"),
                format!("{d:?} is not a DNS name"),
            );
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    domains
}

/// `challenge`: `http-01` (default) or `tls-alpn-01`.
fn challenge(raw: &RawAcme, key: &str, errs: &mut Errors) -> AcmeChallenge {
    match raw.challenge.as_ref().map(|c| c.value.as_str()) {
        None | Some("http-01") => AcmeChallenge::Http01,
        Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some(other) => {
            if let Some(c) = &raw.challenge {
                errs.at(
                    Some(&c.referenced),
                    format!("{key}.challenge"),
                    format!("unknown challenge {other:?}: use http-01 or tls-alpn-01"),
                );
            }
            AcmeChallenge::Http01
        }
    }
}
