//! Matching verified JWT claims (`match.jwt_claims`) and turning claims into
//! upstream header values (`forward_claims`).
//!
//! A claim name with dots walks into nested objects (`realm_access.roles`,
//! as Keycloak nests roles); a top-level claim whose own name contains dots
//! (Auth0's `https://example.com/roles`) is found too, because every split
//! of the name is tried, the longest key first at each level.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

/// The value a claim must have.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimValue {
    /// The claim exists, with any value (`"*"`).
    Present,
    /// A string.
    Str(Box<str>),
    /// An integer.
    Int(i64),
    /// A non-integer number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// One `jwt_claims` entry: a (dotted) claim name and the value it must have.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimMatch {
    /// The claim name as written (`region`, `realm_access.roles`).
    pub name: Box<str>,
    /// The required value.
    pub value: ClaimValue,
}

impl ClaimMatch {
    /// True when the claim exists and equals the value, or, when the claim is
    /// an array, one of its elements equals the value.
    ///
    /// Equality is by type, with one convenience: when either side is a
    /// string, the other side's text is compared (`sub: 12345` in YAML
    /// matches the string claim `"12345"`).
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        let Some(claim) = lookup(claims, &self.name) else {
            return false;
        };
        match (&self.value, claim) {
            (ClaimValue::Present, _) => true,
            (_, Value::Array(items)) => items.iter().any(|v| scalar_eq(&self.value, v)),
            (_, v) => scalar_eq(&self.value, v),
        }
    }
}

fn scalar_eq(want: &ClaimValue, have: &Value) -> bool {
    match (want, have) {
        (ClaimValue::Present, _) => true,
        (ClaimValue::Str(w), Value::String(h)) => **w == **h,
        (ClaimValue::Str(w), Value::Number(n)) => n.to_string() == **w,
        (ClaimValue::Str(w), Value::Bool(b)) => &**w == if *b { "true" } else { "false" },
        (ClaimValue::Int(w), Value::Number(n)) => n
            .as_i64()
            .map_or(n.as_f64() == Some(*w as f64), |h| h == *w),
        (ClaimValue::Float(w), Value::Number(n)) => n.as_f64() == Some(*w),
        (ClaimValue::Int(w), Value::String(h)) => h.parse::<i64>().ok() == Some(*w),
        (ClaimValue::Float(w), Value::String(h)) => h.parse::<f64>().ok() == Some(*w),
        (ClaimValue::Bool(w), Value::Bool(h)) => w == h,
        (ClaimValue::Bool(w), Value::String(h)) => h == if *w { "true" } else { "false" },
        _ => false,
    }
}

/// Finds the claim `name` in `claims`: the exact key first, then every split
/// at a dot, walking into nested objects. No allocation.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    // Longest head first: `a.b.c` tries `a.b` → `c`, then `a` → `b.c`.
    let mut end = name.len();
    while let Some(dot) = name[..end].rfind('.') {
        let (head, rest) = (&name[..dot], &name[dot + 1..]);
        if let Some(Value::Object(inner)) = claims.get(head) {
            if let Some(v) = lookup(inner, rest) {
                return Some(v);
            }
        }
        end = dot;
    }
    None
}

/// The header value that carries claim `v` upstream: strings as they are,
/// numbers and booleans as text, arrays as a comma-separated list of their
/// elements (like oauth2-proxy's `X-Forwarded-Groups`), objects as JSON.
/// `None` for `null` or when the text is not a valid header value (control
/// characters), so a claim cannot smuggle a header line.
pub fn header_value(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => return HeaderValue::from_str(s).ok(),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
            }
            out
        }
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

/// Applies a route's `forward_claims` to the upstream request `headers`:
/// client-sent copies of every listed header are removed, then each header
/// is set from its claim when the token verified and carries the claim.
pub fn forward(
    forward: &[(Box<str>, HeaderName)],
    claims: Option<&Map<String, Value>>,
    headers: &mut HeaderMap,
) {
    for (claim, name) in forward {
        headers.remove(name);
        if let Some(v) = claims.and_then(|c| lookup(c, claim)).and_then(header_value) {
            headers.insert(name.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn m(name: &str, value: ClaimValue) -> ClaimMatch {
        ClaimMatch {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn equality_arrays_and_nesting() {
        let c = claims(json!({
            "region": "eu", "level": 3, "ratio": 0.5, "admin": true, "sub": "12345",
            "roles": ["admin", "dev"],
            "realm_access": {"roles": ["ops"], "deep": {"x": 1}},
            "https://example.com/tenant": "acme"
        }));
        assert!(m("region", ClaimValue::Str("eu".into())).matches(&c));
        assert!(!m("region", ClaimValue::Str("us".into())).matches(&c));
        assert!(m("level", ClaimValue::Int(3)).matches(&c));
        assert!(!m("level", ClaimValue::Int(4)).matches(&c));
        assert!(m("ratio", ClaimValue::Float(0.5)).matches(&c));
        assert!(m("admin", ClaimValue::Bool(true)).matches(&c));
        assert!(!m("admin", ClaimValue::Bool(false)).matches(&c));
        assert!(m("sub", ClaimValue::Int(12345)).matches(&c));
        assert!(m("roles", ClaimValue::Str("dev".into())).matches(&c));
        assert!(!m("roles", ClaimValue::Str("root".into())).matches(&c));
        assert!(m("realm_access.roles", ClaimValue::Str("ops".into())).matches(&c));
        assert!(m("realm_access.deep.x", ClaimValue::Int(1)).matches(&c));
        assert!(m("realm_access.deep", ClaimValue::Present).matches(&c));
        assert!(!m("realm_access.none", ClaimValue::Present).matches(&c));
        assert!(m("https://example.com/tenant", ClaimValue::Str("acme".into())).matches(&c));
        assert!(!m("missing", ClaimValue::Present).matches(&c));
        // A string value is not equal to an object.
        assert!(!m("realm_access", ClaimValue::Str("x".into())).matches(&c));
    }

    #[test]
    fn header_values() {
        assert_eq!(header_value(&json!("eu")).unwrap(), "eu");
        assert_eq!(header_value(&json!(7)).unwrap(), "7");
        assert_eq!(header_value(&json!(["a", "b", 1])).unwrap(), "a,b,1");
        assert!(header_value(&json!("a\r\nx-evil: 1")).is_none());
        assert!(header_value(&Value::Null).is_none());
    }
}
