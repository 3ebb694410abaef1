//! Validation of a route's `redirect`: scheme, host, port, path and status
//! of the answer weir sends instead of forwarding.

use http::uri::PathAndQuery;
use http::StatusCode;
use serde_saphyr::Spanned;

use super::content::RawRedirect;
use super::validate::Errors;
use crate::content::redirect::{self, Redirect};

/// Validates a route's `redirect` (`key` = `routes[i].redirect`).
pub(super) fn redirect_rule(
    rd: &Spanned<RawRedirect>,
    key: &str,
    errs: &mut Errors,
) -> Option<Redirect> {
    let v = &rd.value;
    let before = errs.list.len();
    let scheme = v
        .scheme
        .as_ref()
        .and_then(|s| match s.value.to_ascii_lowercase().as_str() {
            "http" => Some("http"),
            "https" => Some("https"),
            other => {
                errs.at(
                    Some(&s.referenced),
                    format!("{key}.scheme"),
                    format!("{other:?}: http or https"),
                );
                None
            }
        });
    let host = host(v, key, errs);
    let port = v.port.as_ref().and_then(|p| {
        if p.value == 0 {
            errs.at(
                Some(&p.referenced),
                format!("{key}.port"),
                "must be 1 to 65535",
            );
            None
        } else {
            Some(p.value)
        }
    });
    let path = path(v, key, errs);
    let status = status(v, key, errs);
    if v.scheme.is_none() && v.host.is_none() && v.port.is_none() && v.path.is_none() {
        errs.at(
            Some(&rd.referenced),
            key,
            "must change at least one of scheme, host, port and path (or it redirects to itself)",
        );
    }
    (errs.list.len() == before).then_some(Redirect {
        scheme,
        host,
        port,
        path,
        status,
    })
}

/// `redirect.host`: a host name without scheme, port or path.
fn host(v: &RawRedirect, key: &str, errs: &mut Errors) -> Option<Box<str>> {
    v.host.as_ref().and_then(|h| {
        let ok = !h.value.is_empty()
            && h.value.parse::<http::uri::Authority>().is_ok_and(|a| {
                a.port().is_none() && !a.as_str().contains('@') && a.host() == h.value
            });
        if ok {
            Some(h.value.to_ascii_lowercase().into_boxed_str())
        } else {
            errs.at(
                Some(&h.referenced),
                format!("{key}.host"),
                format!(
                    "{:?} is not a host name (without scheme, port or path)",
                    h.value
                ),
            );
            None
        }
    })
}

/// `redirect.path`: starting with `/`, without query.
fn path(v: &RawRedirect, key: &str, errs: &mut Errors) -> Option<Box<str>> {
    v.path.as_ref().and_then(|p| {
        let ok = p.value.starts_with('/')
            && !p.value.contains(['?', '#'])
            && PathAndQuery::try_from(p.value.as_str()).is_ok();
        if ok {
            Some(p.value.clone().into_boxed_str())
        } else {
            errs.at(
                Some(&p.referenced),
                format!("{key}.path"),
                format!(
                    "{:?} is not a path (starting with /, without query)",
                    p.value
                ),
            );
            None
        }
    })
}

/// `redirect.status` (default 301).
fn status(v: &RawRedirect, key: &str, errs: &mut Errors) -> StatusCode {
    match &v.status {
        None => StatusCode::MOVED_PERMANENTLY,
        Some(s) if redirect::STATUSES.contains(&s.value) => {
            StatusCode::from_u16(s.value).unwrap_or(StatusCode::MOVED_PERMANENTLY)
        }
        Some(s) => {
            errs.at(
                Some(&s.referenced),
                format!("{key}.status"),
                format!("{}: 301, 302, 303, 307 or 308", s.value),
            );
            StatusCode::MOVED_PERMANENTLY
        }
    }
}
