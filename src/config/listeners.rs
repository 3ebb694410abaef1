//! Validation of one listener (`listeners[i]`): its address, TLS
//! certificates, timeouts and limits. PROXY protocol and client certificates
//! are in `edge.rs`, ACME in `acme.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::load::{self, resolve_bind_address};
use super::model::*;
use super::units;
use super::validate::Errors;
use super::{RawListener, RawTls, Spanned};

/// Validates `listeners[i]`; relative paths resolve against `base`.
pub(super) fn listener(
    l: &RawListener,
    i: usize,
    base: &Path,
    errs: &mut Errors,
) -> Option<ListenerConfig> {
    let key = format!("listeners[{i}]");
    let address = match resolve_bind_address(&l.address.value) {
        Ok(a) => Some(a),
        Err(m) => {
            errs.at(Some(&l.address.referenced), format!("{key}.address"), m);
            None
        }
    };
    let request_header_timeout = units::nonzero_or_default(
        l.request_header_timeout.as_ref(),
        DEFAULT_REQUEST_HEADER_TIMEOUT,
        format!("{key}.request_header_timeout"),
        errs,
    );
    let idle_timeout = units::nonzero_or_default(
        l.idle_timeout.as_ref(),
        DEFAULT_IDLE_TIMEOUT,
        format!("{key}.idle_timeout"),
        errs,
    );
    let (max_header_bytes, max_headers) = header_limits(l, &key, errs);
    let client_body_timeout = match l.client_body_timeout.as_ref().map(|d| d.value.0) {
        None => DEFAULT_CLIENT_BODY_TIMEOUT,
        Some(d) if d.is_zero() => {
            errs.at(
                Some(&l.address.referenced),
                format!("{key}.client_body_timeout"),
                "must be more than 0s",
            );
            DEFAULT_CLIENT_BODY_TIMEOUT
        }
        Some(d) => d,
    };
    let mut tls_files = Vec::new();
    let tls = l
        .tls
        .as_ref()
        .map(|t| certificates(l, t, &key, base, &mut tls_files, errs));
    let max_connections = cap(&l.max_connections, &key, "max_connections", errs);
    let max_connections_per_ip = cap(
        &l.max_connections_per_ip,
        &key,
        "max_connections_per_ip",
        errs,
    );
    let edge = super::edge::listener(l, &key, base, errs);
    let acme = super::acme::acme(
        l.tls.as_ref().and_then(|t| t.acme.as_ref()),
        &key,
        base,
        errs,
    );
    let address = address?;
    Some(ListenerConfig {
        name: Arc::from(l.name.clone().unwrap_or_else(|| address.to_string())),
        address,
        tls,
        tls_files,
        request_header_timeout,
        max_header_bytes,
        idle_timeout,
        max_connections,
        max_connections_per_ip,
        client_body_timeout,
        max_headers,
        edge,
        acme,
    })
}

/// A connection cap (`max_connections`, `max_connections_per_ip`): at least 1.
fn cap(v: &Option<Spanned<usize>>, key: &str, name: &str, errs: &mut Errors) -> Option<usize> {
    match v {
        Some(v) if v.value == 0 => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.{name}"),
                "must be at least 1",
            );
            None
        }
        Some(v) => Some(v.value),
        None => None,
    }
}

/// `max_header_bytes` and `max_headers`.
fn header_limits(l: &RawListener, key: &str, errs: &mut Errors) -> (usize, usize) {
    let max_header_bytes = match &l.max_header_bytes {
        None => DEFAULT_MAX_HEADER_BYTES,
        Some(v) if v.value < 8192 => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.max_header_bytes"),
                "must be at least 8192",
            );
            DEFAULT_MAX_HEADER_BYTES
        }
        Some(v) => v.value,
    };
    let max_headers = match &l.max_headers {
        None => DEFAULT_MAX_HEADERS,
        Some(v) if v.value == 0 || v.value > MAX_MAX_HEADERS => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.max_headers"),
                format!("must be between 1 and {MAX_MAX_HEADERS}"),
            );
            DEFAULT_MAX_HEADERS
        }
        Some(v) => v.value,
    };
    (max_header_bytes, max_headers)
}

/// Loads `tls.certificates`; each pair's files are pushed onto `files`.
fn certificates(
    l: &RawListener,
    t: &RawTls,
    key: &str,
    base: &Path,
    files: &mut Vec<(PathBuf, PathBuf)>,
    errs: &mut Errors,
) -> Vec<Arc<CertifiedKey>> {
    if t.certificates.value.is_empty() && t.acme.is_none() {
        // Absent `certificates` has no span: point at the listener.
        let at = if t.certificates.referenced == serde_saphyr::Location::UNKNOWN {
            &l.address.referenced
        } else {
            &t.certificates.referenced
        };
        errs.at(
            Some(at),
            format!("{key}.tls.certificates"),
            "at least one certificate is required",
        );
    }
    let mut keys = Vec::new();
    for (j, c) in t.certificates.value.iter().enumerate() {
        let cert = base.join(&c.cert.value);
        let pkey = base.join(&c.key.value);
        match load::load_certified_key(&cert, &pkey) {
            Ok(k) => {
                keys.push(Arc::new(k));
                files.push((cert, pkey));
            }
            Err(load::CertError::Cert(m)) => errs.at(
                Some(&c.cert.referenced),
                format!("{key}.tls.certificates[{j}].cert"),
                format!("{}: {m}", cert.display()),
            ),
            Err(load::CertError::Key(m)) => errs.at(
                Some(&c.key.referenced),
                format!("{key}.tls.certificates[{j}].key"),
                format!("{}: {m}", pkey.display()),
            ),
        }
    }
    keys
}
