//! Header rules (`routes[].request_headers`, `routes[].response_headers`):
//! `remove`, `set` and `add`, applied in that order after weir's own proxy
//! headers (so `x-forwarded-proto` changes only when a rule names it), as
//! nginx's `proxy_set_header`/`add_header`, Envoy's
//! `request_headers_to_add`/`..._to_remove` and Traefik's `headers` do.
//!
//! Names and values are checked when the config loads; applying a rule set
//! is a few map operations on pre-built names and values.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Headers no rule may touch: they frame the message or belong to one hop
/// (RFC 9110 §7.6.1), and weir manages them itself.
pub const RESERVED: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// One direction's rules, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Removed first (every value).
    pub remove: Vec<HeaderName>,
    /// Then set: replaces every value of the header.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Then added: appended next to any value already there.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderRules {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the rules to `headers`: remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_set_add_in_order() {
        let n = |s: &'static str| HeaderName::from_static(s);
        let v = HeaderValue::from_static;
        let rules = HeaderRules {
            remove: vec![n("server"), n("x-powered-by")],
            set: vec![(n("x-env"), v("prod")), (n("server"), v("weir"))],
            add: vec![(n("x-tag"), v("edge"))],
        };
        let mut h = HeaderMap::new();
        h.insert("server", v("nginx"));
        h.insert("x-powered-by", v("php"));
        h.append("x-env", v("dev"));
        h.append("x-env", v("test"));
        h.insert("x-tag", v("origin"));
        rules.apply(&mut h);
        assert!(!h.contains_key("x-powered-by"));
        assert_eq!(h["server"], "weir");
        assert_eq!(h.get_all("x-env").iter().collect::<Vec<_>>(), ["prod"]);
        assert_eq!(
            h.get_all("x-tag").iter().collect::<Vec<_>>(),
            ["origin", "edge"]
        );
        assert!(!rules.is_empty());
        assert!(HeaderRules::default().is_empty());
    }
}
