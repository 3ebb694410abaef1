//! Who may drive the admin API.
//!
//! - **Host** (every endpoint): the `Host` (or `:authority`) must be
//!   `localhost` or an IP literal, so a page whose DNS name was rebound to the
//!   admin address cannot read `/status` or post to `/reload` (DNS rebinding).
//!   Other names get 403; reach the admin API by its address.
//! - **Cross-site requests** (mutating endpoints): a browser marks them with
//!   `Sec-Fetch-Site: cross-site`/`same-site` or an `Origin` that is not the
//!   admin's own; those get 403 always, token or not (a form POST needs no
//!   CORS preflight).
//! - **Token** (mutating endpoints, when `admin.token`, `token_env` or
//!   `token_file` is set): `Authorization: Bearer <token>` is required,
//!   compared in constant time; otherwise 401 with `WWW-Authenticate: Bearer`
//!   (RFC 6750 §3).
//!
//! Mutating endpoints are every method other than GET and HEAD: `/reload`,
//! drain, enable and cache purge.

use std::net::IpAddr;

use http::{header, HeaderMap, Method, StatusCode, Uri};

/// Why a request to the admin API was refused: the status and a short message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401 or 403.
    pub status: StatusCode,
    /// One line saying why.
    pub message: &'static str,
}

/// True for methods that change state (everything but GET and HEAD).
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Checks an admin request (`method`, `uri`, `headers`) against the rules in
/// the module docs; `token` is the configured admin token, if any.
///
/// # Errors
/// The [`Refusal`] to answer with.
pub fn check(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    token: Option<&[u8]>,
) -> Result<(), Refusal> {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    if let Some(h) = host {
        if !host_allowed(h) {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "403 Forbidden: Host must be localhost or an IP address",
            });
        }
    }
    if !is_mutating(method) {
        return Ok(());
    }
    if is_cross_site(headers, host) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "403 Forbidden: cross-site request",
        });
    }
    if let Some(want) = token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        if !given.is_some_and(|g| constant_time_eq(g, want)) {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "401 Unauthorized: Authorization: Bearer <admin token> required",
            });
        }
    }
    Ok(())
}

/// True when `host` (with or without a port) is `localhost` or an IP literal.
pub fn host_allowed(host: &str) -> bool {
    let name = crate::route::host_without_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    literal.parse::<IpAddr>().is_ok()
}

/// True when a browser marked the request as coming from another site: a
/// `Sec-Fetch-Site` other than `same-origin`/`none`, or an `Origin` that is
/// not `http(s)://<Host>` (`null` included).
fn is_cross_site(headers: &HeaderMap, host: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        if !(site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none")) {
            return true;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let own = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (own, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme
/// case-insensitive, RFC 6750 §2.1).
fn bearer(v: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = v.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Equality whose time does not depend on where the bytes differ (the
/// length may show).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn rules() {
        let uri: Uri = "/reload".parse().unwrap();
        let post = Method::POST;
        let ok = headers(&[("host", "127.0.0.1:9901")]);
        assert!(check(&post, &uri, &ok, None).is_ok());
        let rebound = headers(&[("host", "evil.example:9901")]);
        assert_eq!(
            check(&Method::GET, &uri, &rebound, None)
                .unwrap_err()
                .status,
            403
        );
        let xs = headers(&[
            ("host", "localhost:9901"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(check(&post, &uri, &xs, None).unwrap_err().status, 403);
        let same = headers(&[
            ("host", "localhost:9901"),
            ("origin", "http://localhost:9901"),
        ]);
        assert!(check(&post, &uri, &same, None).is_ok());
        let fetch = headers(&[("host", "[::1]:9901"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(check(&post, &uri, &fetch, None).unwrap_err().status, 403);
        let token = b"0123456789abcdef".as_slice();
        assert_eq!(
            check(&post, &uri, &ok, Some(token)).unwrap_err().status,
            401
        );
        let good = headers(&[
            ("host", "localhost"),
            ("authorization", "Bearer 0123456789abcdef"),
        ]);
        assert!(check(&post, &uri, &good, Some(token)).is_ok());
        let bad = headers(&[
            ("host", "localhost"),
            ("authorization", "bearer 0123456789abcdeX"),
        ]);
        assert_eq!(
            check(&post, &uri, &bad, Some(token)).unwrap_err().status,
            401
        );
        assert!(check(&Method::GET, &uri, &ok, Some(token)).is_ok());
    }
}
