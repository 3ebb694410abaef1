//! Path rewrites (`routes[].rewrite`): the path sent upstream differs from
//! the one received; the query is kept as it is.
//!
//! - `prefix`: the route's `match.path_prefix` is replaced by this (Envoy's
//!   `prefix_rewrite`). `/api` → `/v2` sends `/api/users?x=1` as
//!   `/v2/users?x=1` and `/api` as `/v2`.
//! - `regex` + `replace`: every match of the expression in the path is
//!   replaced, `$1`/`${name}` naming capture groups (Traefik's
//!   `ReplacePathRegex`).
//!
//! Both work on the normalized path the route matched (`route::path`), so
//! `/api/../api/x` and `//api/x` are rewritten as `/api/x` is.

use http::uri::PathAndQuery;
use regex::Regex;

/// A validated rewrite rule.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Replace the matched prefix.
    Prefix {
        /// The route's `path_prefix`, normalized, without trailing `/`
        /// (empty for a route matching every path).
        from: Box<str>,
        /// What replaces it.
        to: Box<str>,
    },
    /// Replace every match of `regex` by `replace`.
    Regex {
        /// The compiled expression.
        regex: Regex,
        /// The replacement, with `$N`/`${name}` group references.
        replace: Box<str>,
    },
}

/// A rewrite that produced something that is not a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRewrite(pub String);

impl std::fmt::Display for BadRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the rewritten path {:?} is not a valid request path",
            self.0
        )
    }
}

impl std::error::Error for BadRewrite {}

impl Rewrite {
    /// The upstream path and query for a request whose normalized path is
    /// `path` and whose raw query is `query`.
    ///
    /// # Errors
    /// When the result is not a valid origin-form target (a regex
    /// replacement that yields a space, or no leading `/`).
    pub fn apply(&self, path: &str, query: Option<&str>) -> Result<PathAndQuery, BadRewrite> {
        let mut out = match self {
            Rewrite::Prefix { from, to } => {
                let rest = path.strip_prefix(&**from).unwrap_or(path);
                if rest.is_empty() || rest == "/" && to.ends_with('/') {
                    if to.is_empty() {
                        "/".to_string()
                    } else {
                        to.to_string()
                    }
                } else {
                    let mut s = to.trim_end_matches('/').to_string();
                    if !rest.starts_with('/') {
                        s.push('/');
                    }
                    s.push_str(rest);
                    s
                }
            }
            Rewrite::Regex { regex, replace } => regex.replace_all(path, &**replace).into_owned(),
        };
        if !out.starts_with('/') {
            return Err(BadRewrite(out));
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        PathAndQuery::try_from(out.as_str()).map_err(|_| BadRewrite(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(from: &str, to: &str) -> Rewrite {
        Rewrite::Prefix {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn prefix_rewrites() {
        let cases = [
            ("/api", "/v2", "/api/users", Some("a=1"), "/v2/users?a=1"),
            ("/api", "/v2", "/api", None, "/v2"),
            ("/api", "/v2", "/api/", None, "/v2/"),
            ("/api", "/", "/api/users", None, "/users"),
            ("/api", "/", "/api", None, "/"),
            ("/api", "/v2/", "/api/x", None, "/v2/x"),
            ("/api", "", "/api/x", None, "/x"),
            ("", "/base", "/x/y", Some("q"), "/base/x/y?q"),
            ("/a/b", "/c", "/a/b/d", None, "/c/d"),
        ];
        for (from, to, path, query, want) in cases {
            let got = prefix(from, to).apply(path, query).unwrap();
            assert_eq!(got.as_str(), want, "{from} -> {to} on {path}");
        }
    }

    #[test]
    fn regex_rewrites() {
        let r = Rewrite::Regex {
            regex: Regex::new("^/old/(.*)$").unwrap(),
            replace: "/new/$1".into(),
        };
        assert_eq!(
            r.apply("/old/a/b", Some("x=1")).unwrap().as_str(),
            "/new/a/b?x=1"
        );
        assert_eq!(r.apply("/other", None).unwrap().as_str(), "/other");
        let named = Rewrite::Regex {
            regex: Regex::new("^/u/(?P<id>[0-9]+)").unwrap(),
            replace: "/users/${id}/profile".into(),
        };
        assert_eq!(
            named.apply("/u/42", None).unwrap().as_str(),
            "/users/42/profile"
        );
        let bad = Rewrite::Regex {
            regex: Regex::new("^/").unwrap(),
            replace: "x".into(),
        };
        assert!(bad.apply("/a", None).is_err());
        let space = Rewrite::Regex {
            regex: Regex::new("a").unwrap(),
            replace: " ".into(),
        };
        assert!(space.apply("/a", None).is_err());
    }
}
