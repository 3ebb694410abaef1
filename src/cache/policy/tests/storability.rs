//! `storable` (RFC 9111 §3): what weir stores and why it refuses the rest.

use super::*;

// (method, request headers, status, response headers, default_ttl, expected, section)
type Case<'a> = (
    Method,
    Vec<(&'a str, &'a str)>,
    u16,
    Vec<(&'a str, &'a str)>,
    Option<Duration>,
    Result<u64, Refusal>,
    &'a str,
);

fn check(cases: Vec<Case>) {
    for (method, req, status, resp, default_ttl, want, section) in cases {
        let req = headers(&req);
        let resp = headers(&resp);
        let got = storable(
            &method,
            &req,
            &request_directives(&req),
            StatusCode::from_u16(status).unwrap(),
            &resp,
            &directives(&resp),
            default_ttl,
            NOW,
        );
        assert_eq!(got, want, "{section}");
    }
}

#[test]
fn methods_and_statuses() {
    check(vec![
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "max-age=60")],
            None,
            Ok(60),
            "§3: a fresh GET response",
        ),
        (
            Method::POST,
            vec![],
            200,
            vec![("cache-control", "max-age=60")],
            None,
            Err("method"),
            "§3: only GET is stored by weir",
        ),
        (
            Method::HEAD,
            vec![],
            200,
            vec![("cache-control", "max-age=60")],
            None,
            Err("method"),
            "weir answers HEAD from stored GETs, stores none",
        ),
        (
            Method::GET,
            vec![],
            206,
            vec![("cache-control", "max-age=60")],
            None,
            Err("status"),
            "§3.3: partial content is not stored",
        ),
        (
            Method::GET,
            vec![],
            304,
            vec![("cache-control", "max-age=60")],
            None,
            Err("status"),
            "§4.3.4: a 304 only updates",
        ),
    ]);
}

#[test]
fn no_store_private_and_set_cookie() {
    check(vec![
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "no-store, max-age=60")],
            None,
            Err("no-store"),
            "§5.2.2.5 no-store",
        ),
        (
            Method::GET,
            vec![("cache-control", "no-store")],
            200,
            vec![("cache-control", "max-age=60")],
            None,
            Err("no-store"),
            "§5.2.1.5 request no-store",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "private, max-age=60")],
            None,
            Err("private"),
            "§5.2.2.7 private",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "private=\"x-user\", max-age=60")],
            None,
            Err("private"),
            "§5.2.2.7 private with fields: weir does not store it",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "max-age=60"), ("set-cookie", "a=1")],
            None,
            Err("set-cookie"),
            "Set-Cookie: never stored (nginx's default)",
        ),
    ]);
}

#[test]
fn authorization() {
    check(vec![
        (
            Method::GET,
            vec![("authorization", "Bearer t")],
            200,
            vec![("cache-control", "max-age=60")],
            None,
            Err("authorization"),
            "§3.5 Authorization",
        ),
        (
            Method::GET,
            vec![("authorization", "Bearer t")],
            200,
            vec![("cache-control", "public, max-age=60")],
            None,
            Ok(60),
            "§3.5: public",
        ),
        (
            Method::GET,
            vec![("authorization", "Bearer t")],
            200,
            vec![("cache-control", "s-maxage=60")],
            None,
            Ok(60),
            "§3.5: s-maxage",
        ),
        (
            Method::GET,
            vec![("authorization", "Bearer t")],
            200,
            vec![("cache-control", "must-revalidate, max-age=60")],
            None,
            Ok(60),
            "§3.5: must-revalidate",
        ),
    ]);
}

#[test]
fn vary_field() {
    check(vec![
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "max-age=60"), ("vary", "*")],
            None,
            Err("vary"),
            "§4.1: Vary: * never matches",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "max-age=60"), ("vary", "accept-encoding")],
            None,
            Ok(60),
            "§4.1: Vary with names is stored per variant",
        ),
    ]);
}

#[test]
fn freshness_is_needed() {
    let ttl = Some(Duration::from_secs(30));
    check(vec![
        (
            Method::GET,
            vec![],
            200,
            vec![],
            None,
            Err("no-freshness"),
            "§4.2.2: no freshness, no heuristic",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![],
            ttl,
            Ok(30),
            "default_ttl when the route asks",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "no-cache")],
            None,
            Err("no-freshness"),
            "§5.2.2.4 no-cache without a validator is useless",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "no-cache"), ("etag", "\"a\"")],
            None,
            Ok(0),
            "§5.2.2.4 no-cache with a validator: stored, revalidated on each use",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "max-age=0"), ("etag", "\"a\"")],
            None,
            Ok(0),
            "§4.2.1 max-age=0 with a validator",
        ),
        (
            Method::GET,
            vec![],
            200,
            vec![("cache-control", "max-age=0")],
            None,
            Err("no-freshness"),
            "max-age=0 without a validator",
        ),
    ]);
}
