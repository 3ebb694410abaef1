//! The route table: an ordered list of routes, first match wins.
//!
//! Built once per config and shared read-only by every connection; a lookup
//! takes no lock and allocates only when the request path needs normalizing
//! (see [`path::normalize`]).

pub mod claims;
pub mod jwt;
pub mod matchers;
pub mod path;

use std::collections::HashMap;
use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, Method};

/// Host matcher: exact name or a `*.suffix` wildcard; case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Exactly this host (stored lower-case).
    Exact(Box<str>),
    /// Any host ending in this suffix, which starts with `.` (stored lower-case).
    /// `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
    Wildcard(Box<str>),
}

impl HostMatch {
    /// Parses `example.com` or `*.example.com`.
    ///
    /// # Errors
    /// Empty names, a port, or a `*` anywhere but the first label.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        if s.is_empty() {
            return Err("host must not be empty".into());
        }
        if let Some(rest) = s.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err(format!("{s:?}: a wildcard host is \"*.example.com\""));
            }
            return Ok(HostMatch::Wildcard(format!(".{rest}").into()));
        }
        if s.contains('*') {
            return Err(format!("{s:?}: a wildcard host is \"*.example.com\""));
        }
        if s.contains('/') || (s.contains(':') && !s.starts_with('[')) {
            return Err(format!("{s:?}: host only, without scheme or port"));
        }
        Ok(HostMatch::Exact(s.into()))
    }

    /// True when `host` (without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// Path matcher.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Every path.
    Any,
    /// Segment-aware prefix without trailing `/` (except the root): `/a`
    /// matches `/a`, `/a/` and `/a/b`, not `/ab`.
    Prefix(Box<str>),
    /// A matchit pattern (`/users/{id}`, `/static/{*rest}`).
    Pattern {
        /// The compiled pattern.
        router: Box<matchit::Router<()>>,
        /// The first path segment when it is literal (`users` in
        /// `/users/{id}`), for the route table's index.
        first: Option<Box<str>>,
    },
}

impl PathMatch {
    /// A segment-aware prefix matcher.
    ///
    /// # Errors
    /// When the prefix does not start with `/`.
    pub fn prefix(p: &str) -> Result<Self, String> {
        if !p.starts_with('/') {
            return Err(format!("{p:?} must start with /"));
        }
        let p = path::normalize(p);
        let p = p.trim_end_matches('/');
        if p.is_empty() {
            return Ok(PathMatch::Any);
        }
        Ok(PathMatch::Prefix(p.into()))
    }

    /// A matchit pattern matcher.
    ///
    /// # Errors
    /// When the pattern does not start with `/` or matchit rejects it.
    pub fn pattern(p: &str) -> Result<Self, String> {
        if !p.starts_with('/') {
            return Err(format!("{p:?} must start with /"));
        }
        let mut router = matchit::Router::new();
        router
            .insert(p, ())
            .map_err(|e| format!("invalid path pattern {p:?}: {e}"))?;
        let segment = first_segment(p);
        let first = (!segment.contains(['{', '}', '*'])).then(|| segment.into());
        Ok(PathMatch::Pattern {
            router: Box::new(router),
            first,
        })
    }

    /// True when the normalized `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(prefix) => {
                path.starts_with(&**prefix)
                    && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
            }
            PathMatch::Pattern { router, .. } => router.at(path).is_ok(),
        }
    }
}

pub use claims::{ClaimMatch, ClaimValue};
pub use jwt::{JwtVerifier, RequestToken};
/// Header matcher: one of the header's values matches (see [`ValueMatch`]).
pub use matchers::ValueMatch as HeaderMatch;
pub use matchers::ValueMatch;

/// One route of the table.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name for logs and metrics.
    pub name: Arc<str>,
    /// Host matcher (any host when `None`).
    pub host: Option<HostMatch>,
    /// Path matcher.
    pub path: PathMatch,
    /// Allowed methods (any when empty).
    pub methods: Vec<Method>,
    /// Header matchers; all must hold.
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Query parameter matchers (percent-decoded); all must hold.
    pub query: Vec<(Box<str>, ValueMatch)>,
    /// Cookie matchers; all must hold.
    pub cookies: Vec<(Box<str>, ValueMatch)>,
    /// Claims a valid bearer token must carry; empty = the token is not looked at.
    pub jwt_claims: Vec<ClaimMatch>,
    /// Claim name → upstream header set from the verified token (client
    /// copies of these headers are always removed).
    pub forward_claims: Vec<(Box<str>, HeaderName)>,
    /// Compression, redirect, rewrite and header rules (`crate::content`);
    /// `None` when the route uses none of them.
    pub content: Option<Arc<crate::content::RouteContent>>,
    /// Index of the server group in the config's `groups`
    /// ([`NO_GROUP`] for a redirect route).
    pub group: usize,
}

/// The `group` of a route that has none (a `redirect` route): indexes no group.
pub const NO_GROUP: usize = usize::MAX;

/// What a lookup looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Host without port (from `Host`, or the `:authority` of HTTP/2), if any.
    pub host: Option<&'a str>,
    /// The path, already [normalized](path::normalize).
    pub path: &'a str,
    /// The method.
    pub method: &'a Method,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw query string (after `?`), if any.
    pub query: Option<&'a str>,
    /// The request's bearer token, looked at lazily; `None` when no `jwt`
    /// section is configured (then every `jwt_claims` matcher fails).
    pub token: Option<&'a RequestToken<'a>>,
}

impl Route {
    /// True when every matcher of the route holds for `req`.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(h) = &self.host {
            match req.host {
                Some(host) if h.matches(host) => {}
                _ => return false,
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            return false;
        }
        if !self.path.matches(req.path) {
            return false;
        }
        if !self
            .headers
            .iter()
            .all(|(name, m)| matchers::header_matches(req.headers, name, m))
        {
            return false;
        }
        if !self
            .query
            .iter()
            .all(|(name, m)| matchers::query_matches(req.query, name, m))
        {
            return false;
        }
        if !self
            .cookies
            .iter()
            .all(|(name, m)| matchers::cookie_matches(req.headers, name, m))
        {
            return false;
        }
        // Last: the only matcher that may cost a signature check.
        if self.jwt_claims.is_empty() {
            return true;
        }
        match req.token.and_then(RequestToken::verified) {
            Some(v) => self.jwt_claims.iter().all(|c| c.matches(&v.claims)),
            None => false,
        }
    }
}

/// The ordered route table; immutable once built.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    jwt: Option<Arc<JwtVerifier>>,
    /// Indexes of the routes whose path needs this literal first segment
    /// (`repositories` for `path_prefix: /repositories/x`), ascending.
    by_segment: HashMap<Box<str>, Vec<u32>>,
    /// Indexes of the routes that may match any first segment, ascending.
    any_segment: Vec<u32>,
}

impl PathMatch {
    /// The literal first path segment every matching path has, if any.
    fn required_segment(&self) -> Option<&str> {
        match self {
            PathMatch::Any => None,
            PathMatch::Prefix(p) => Some(first_segment(p)),
            PathMatch::Pattern { first, .. } => first.as_deref(),
        }
    }
}

/// The first segment of a path: `/a/b` → `a`, `/` → ``.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

impl RouteTable {
    /// A table of `routes`, tried in order.
    ///
    /// Routes are indexed by the literal first path segment they require, so
    /// a lookup only tries the routes of the request's first segment plus
    /// those that match any path, still in file order: first match wins
    /// exactly as a linear scan would, at a cost that does not grow with
    /// routes for other segments.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut by_segment: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut any_segment = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match r.path.required_segment() {
                Some(seg) => by_segment.entry(seg.into()).or_default().push(i),
                None => any_segment.push(i),
            }
        }
        RouteTable {
            routes,
            jwt: None,
            by_segment,
            any_segment,
        }
    }

    /// The table with the verifier of the config's `jwt` section.
    pub fn with_jwt(mut self, jwt: Option<Arc<JwtVerifier>>) -> Self {
        self.jwt = jwt;
        self
    }

    /// The bearer-token verifier, when a `jwt` section is configured.
    pub fn jwt(&self) -> Option<&JwtVerifier> {
        self.jwt.as_deref()
    }

    /// The first route that matches `req`.
    pub fn lookup(&self, req: &RequestView<'_>) -> Option<&Route> {
        self.lookup_index(req).map(|i| &self.routes[i])
    }

    /// The index of the first route that matches `req`. Allocates nothing.
    pub fn lookup_index(&self, req: &RequestView<'_>) -> Option<usize> {
        let bucket = self
            .by_segment
            .get(first_segment(req.path))
            .map_or(&[][..], Vec::as_slice);
        let any = self.any_segment.as_slice();
        // Merge the two ascending index lists, trying routes in file order.
        let (mut i, mut j) = (0, 0);
        loop {
            let next = match (bucket.get(i), any.get(j)) {
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    a
                }
                (_, Some(&b)) => {
                    j += 1;
                    b
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (None, None) => return None,
            };
            let index = next as usize;
            if self.routes[index].matches(req) {
                return Some(index);
            }
        }
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Strips the port from a `Host` value: `example.com:8080` → `example.com`,
/// `[::1]:8080` → `[::1]`.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching() {
        let exact = HostMatch::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(exact.matches("Api.Example.Com."));
        assert!(!exact.matches("xapi.example.com"));
        let wild = HostMatch::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.EXAMPLE.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("aexample.com"));
        assert!(HostMatch::parse("a.*.com").is_err());
        assert!(HostMatch::parse("a.com:80").is_err());
        assert_eq!(host_without_port("a.com:8080"), "a.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("a.com"), "a.com");
    }

    #[test]
    fn prefix_is_segment_aware() {
        let p = PathMatch::prefix("/repositories/").unwrap();
        assert!(p.matches("/repositories"));
        assert!(p.matches("/repositories/"));
        assert!(p.matches("/repositories/1"));
        assert!(!p.matches("/repositoriesx"));
        assert!(!p.matches("/repo"));
        assert!(matches!(PathMatch::prefix("/").unwrap(), PathMatch::Any));
        assert!(PathMatch::prefix("x").is_err());
    }

    #[test]
    fn indexed_lookup_agrees_with_a_linear_scan() {
        let mk = |path: PathMatch, host: Option<&str>| Route {
            host: host.map(|h| HostMatch::parse(h).unwrap()),
            path,
            name: Arc::from("r"),
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            cookies: Vec::new(),
            jwt_claims: Vec::new(),
            forward_claims: Vec::new(),
            content: None,
            group: 0,
        };
        let routes = vec![
            mk(PathMatch::prefix("/a").unwrap(), Some("x.com")),
            mk(PathMatch::pattern("/{p}/b").unwrap(), None),
            mk(PathMatch::prefix("/a/b").unwrap(), None),
            mk(PathMatch::pattern("/users/{id}").unwrap(), None),
            mk(PathMatch::Any, Some("y.com")),
            mk(PathMatch::prefix("/a").unwrap(), None),
            mk(PathMatch::pattern("/static/{*rest}").unwrap(), None),
        ];
        let table = RouteTable::new(routes.clone());
        let headers = HeaderMap::new();
        for host in [None, Some("x.com"), Some("y.com")] {
            for path in [
                "/",
                "/a",
                "/a/b",
                "/a/b/c",
                "/z/b",
                "/users/1",
                "/users",
                "/static/x/y",
                "/ab",
                "/b",
                "/a/c",
            ] {
                let view = RequestView {
                    host,
                    path,
                    method: &Method::GET,
                    headers: &headers,
                    query: None,
                    token: None,
                };
                let linear = routes.iter().position(|r| r.matches(&view));
                assert_eq!(table.lookup_index(&view), linear, "{host:?} {path}");
            }
        }
    }

    #[test]
    fn pattern_matching() {
        let p = PathMatch::pattern("/users/{id}").unwrap();
        assert!(p.matches("/users/42"));
        assert!(!p.matches("/users/42/x"));
        assert!(!p.matches("/users"));
        let p = PathMatch::pattern("/static/{*rest}").unwrap();
        assert!(p.matches("/static/a/b.css"));
        assert!(PathMatch::pattern("/a/{").is_err());
    }
}
