//! Property-based fuzzing on stable Rust (issue 13, item 9): the parsers that
//! see client bytes never panic, stay within bounds and keep their
//! invariants. Case counts are bounded so each property runs in well under a
//! few seconds in CI. (PROXY-protocol parsing is not in weir yet; add its
//! property here when it lands.)

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request};
use proptest::prelude::*;
use weir::affinity::{cookie_header, CookieKey};
use weir::proxy::request_checks::{climbs_above_root, valid_host};
use weir::route::path::normalize;

/// `n` cases, or `PROPTEST_CASES` when set (for a longer local run).
fn cases(n: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
}

/// Bytes biased toward what matters to each parser.
fn path_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("/".to_string()),
            Just("..".to_string()),
            Just(".".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%2f".to_string()),
            Just("%".to_string()),
            "[a-zA-Z0-9_~-]{1,4}",
            "%[0-9a-fA-F]{2}",
        ],
        0..24,
    )
    .prop_map(|parts| format!("/{}", parts.concat()))
}

fn host_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[a-z0-9.:@\\[\\]% _-]{0,30}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    /// normalize: no panic; starts with '/'; idempotent; no dot segments or
    /// empty segments left; a path that does not climb above the root keeps
    /// its depth accounting.
    #[test]
    fn path_normalization(p in path_strategy()) {
        let n = normalize(&p);
        prop_assert!(n.starts_with('/'));
        let again = normalize(&n).into_owned();
        prop_assert_eq!(again.as_str(), n.as_ref());
        for seg in n.split('/').skip(1) {
            prop_assert!(seg != "." && seg != "..", "{} -> {}", p, n);
        }
        prop_assert!(!n.contains("//"), "{} -> {}", p, n);
        // A normalized path never climbs.
        prop_assert!(!climbs_above_root(&n));
    }

    /// Host parsing: no panic; a valid host has no userinfo, whitespace or
    /// controls, is a valid header value, and (when not empty) a valid URI authority.
    #[test]
    fn host_parsing(h in host_strategy()) {
        if valid_host(&h) {
            prop_assert!(!h.contains(&b'@'));
            prop_assert!(!h.iter().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()));
            prop_assert!(HeaderValue::from_bytes(&h).is_ok());
            if !h.is_empty() {
                let s = std::str::from_utf8(&h).unwrap();
                prop_assert!(s.parse::<http::uri::Authority>().is_ok(), "{}", s);
            }
        }
        let _ = weir::route::host_without_port(&String::from_utf8_lossy(&h));
    }

    /// The request checks: never panic on any Host bytes and path.
    #[test]
    fn request_checks(h in host_strategy(), p in path_strategy(), n in 0usize..4) {
        let mut b = Request::builder().uri(p.as_str());
        if let Ok(v) = HeaderValue::from_bytes(&h) {
            for _ in 0..n {
                b = b.header(http::header::HOST, v.clone());
            }
        }
        if let Ok(mut req) = b.body(()) {
            let _ = weir::proxy::request_checks::check(&mut req, 100);
        }
    }

    /// Cookie parser: no panic on any Cookie bytes; remove() removes every
    /// value of the name and nothing else.
    #[test]
    fn cookie_parser(fields in proptest::collection::vec("[ -~]{0,60}", 0..4), name in "[a-z]{1,4}") {
        let mut headers = HeaderMap::new();
        for f in &fields {
            if let Ok(v) = HeaderValue::from_str(f) {
                headers.append(http::header::COOKIE, v);
            }
        }
        let others_before: usize = headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .filter(|p| p.contains(&b'='))
            .count();
        let named = cookie_header::values(&headers, &name).count();
        cookie_header::remove(&mut headers, &name);
        prop_assert_eq!(cookie_header::values(&headers, &name).count(), 0);
        let after: usize = headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .filter(|p| p.contains(&b'='))
            .count();
        prop_assert!(after + named <= others_before);
    }

    /// Sticky-cookie codec: round trip for every id and time; random or
    /// tampered values never decode (and never panic).
    #[test]
    fn sticky_cookie_codec(
        secret in proptest::collection::vec(any::<u8>(), 16..64),
        id in "[ -~]{1,64}",
        issued in any::<u64>(),
        junk in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<usize>(),
    ) {
        let key = CookieKey::derive(&secret, "weir_s");
        let value = key.encode(&id, issued);
        let decoded = key.decode(value.as_bytes()).expect("own cookie decodes");
        prop_assert_eq!(decoded.id(), id.as_bytes());
        prop_assert_eq!(decoded.issued, issued);
        prop_assert!(key.decode(&junk).is_none() || junk == value.as_bytes());
        let mut tampered = value.clone().into_bytes();
        let i = flip % tampered.len();
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        if let Some(d) = key.decode(&tampered) {
            // base64's last character can carry unused bits; the payload must still be the same.
            prop_assert_eq!(d.id(), id.as_bytes());
        }
        let other = CookieKey::derive(&secret, "other");
        prop_assert!(other.decode(value.as_bytes()).is_none());
    }
}

const VALID: &str = "listeners:\n  - name: http\n    address: 127.0.0.1:0\n    client_body_timeout: 5s\n    max_headers: 50\nadmin:\n  address: 127.0.0.1:0\nroutes:\n  - match: { path_prefix: /api, methods: [GET] }\n    group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:1\n        weight: 2\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Config loading: any text, and any byte-level mutation of a valid
    /// file, gives a config or errors — never a panic — in bounded time.
    #[test]
    fn config_loading(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        noise in "[ -~\n]{0,200}",
    ) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz.yaml");
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let started = Instant::now();
        let text = String::from_utf8_lossy(&bytes);
        let _ = weir::config::load_str(&text, &root);
        let _ = weir::config::load_str(&noise, &root);
        prop_assert!(started.elapsed() < Duration::from_secs(2));
    }
}
