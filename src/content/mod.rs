//! Content at the edge: what weir changes in requests and responses on a
//! route's behalf. Compression ([`compress`]), redirects ([`redirect`]),
//! upstream path rewrites ([`rewrite`]) and header rules ([`header_rules`]).
//!
//! The config (`config/content.rs`) builds one [`RouteContent`] per route
//! that uses any of these keys; a route without them carries `None` and
//! costs nothing on the request path. The request path (`proxy::service`)
//! calls the small hooks below at fixed points:
//!
//! request: route → redirect (answers, no group) → protection → negotiate
//! the coding (before the request headers move upstream) → weir's proxy
//! headers → `request_headers` rules → path rewrite → forward;
//! response: weir's response headers → `response_headers` rules →
//! compression (last).

pub mod compress;
pub mod header_rules;
pub mod redirect;
pub mod rewrite;

use http::uri::PathAndQuery;
use http::HeaderMap;

pub use compress::{Compression, Encoding};
pub use header_rules::HeaderRules;
pub use redirect::Redirect;
pub use rewrite::{BadRewrite, Rewrite};

/// The content keys of one route, validated.
#[derive(Debug, Clone, Default)]
pub struct RouteContent {
    /// `redirect`: answer with a redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    /// `rewrite`: the upstream path.
    pub rewrite: Option<Rewrite>,
    /// `request_headers`: applied after weir's proxy headers.
    pub request_headers: HeaderRules,
    /// `response_headers`: applied after weir's response headers.
    pub response_headers: HeaderRules,
    /// `compression`.
    pub compression: Option<Compression>,
}

/// The route's compression settings, if any.
#[inline]
pub fn compression(content: Option<&RouteContent>) -> Option<&Compression> {
    content.and_then(|c| c.compression.as_ref())
}

/// Applies the route's `request_headers` rules.
#[inline]
pub fn request_headers(content: Option<&RouteContent>, headers: &mut HeaderMap) {
    if let Some(c) = content {
        c.request_headers.apply(headers);
    }
}

/// Applies the route's `response_headers` rules.
#[inline]
pub fn response_headers(content: Option<&RouteContent>, headers: &mut HeaderMap) {
    if let Some(c) = content {
        c.response_headers.apply(headers);
    }
}

/// The rewritten upstream path and query, or `None` when the route has no
/// rewrite (the request's own target goes upstream). `path` is the
/// normalized request path, `query` the raw query.
///
/// # Errors
/// When the rewrite yields an invalid target ([`BadRewrite`]); the request
/// gets 500 (a config mistake, not the client's).
#[inline]
pub fn upstream_path(
    content: Option<&RouteContent>,
    path: &str,
    query: Option<&str>,
) -> Result<Option<PathAndQuery>, BadRewrite> {
    match content.and_then(|c| c.rewrite.as_ref()) {
        None => Ok(None),
        Some(r) => r.apply(path, query).map(Some),
    }
}
