//! Table-driven cases of the RFC 9111 rules; each names its section.

use super::*;
use http::HeaderValue;

const NOW: u64 = 1_800_000_000;

fn headers(list: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in list {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn http_date(unix: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix))
}

#[test]
fn cache_control_parsing() {
    // (field values, expected directives, section)
    let cases: Vec<(&[&str], Directives, &str)> = vec![
        (
            &["max-age=60"],
            Directives {
                max_age: Some(60),
                ..Default::default()
            },
            "§5.2.2.1 max-age",
        ),
        (
            &["Max-Age=60, S-MAXAGE=\"30\""],
            Directives {
                max_age: Some(60),
                s_maxage: Some(30),
                ..Default::default()
            },
            "§5.2: directive names are case-insensitive; quoted values accepted",
        ),
        (
            &["max-age=60", "max-age=10"],
            Directives {
                max_age: Some(60),
                ..Default::default()
            },
            "§4.2.1: the first of duplicated directives is used",
        ),
        (
            &["max-age=abc"],
            Directives {
                max_age: Some(0),
                ..Default::default()
            },
            "§4.2.1: an invalid max-age makes the response stale",
        ),
        (
            &["max-age=99999999999"],
            Directives {
                max_age: Some(MAX_DELTA),
                ..Default::default()
            },
            "§1.2.2: delta-seconds overflow is 2^31",
        ),
        (
            &["private=\"set-cookie, x-a\", no-cache=\"x-b\""],
            Directives {
                private: true,
                no_cache: true,
                ..Default::default()
            },
            "§5.2.2.7/§5.2.2.4: commas inside quoted field lists do not split",
        ),
        (
            &["public, proxy-revalidate, stale-while-revalidate=30, stale-if-error=60"],
            Directives {
                public: true,
                must_revalidate: true,
                stale_while_revalidate: Some(30),
                stale_if_error: Some(60),
                ..Default::default()
            },
            "§5.2.2.8 proxy-revalidate as must-revalidate; RFC 5861",
        ),
        (
            &["max-stale, min-fresh=5, only-if-cached, no-store"],
            Directives {
                max_stale: Some(None),
                min_fresh: Some(5),
                only_if_cached: true,
                no_store: true,
                ..Default::default()
            },
            "§5.2.1 request directives",
        ),
        (
            &["foo=bar, , x"],
            Directives::default(),
            "§5.2.3: unknown directives are ignored",
        ),
    ];
    for (values, want, section) in cases {
        let h = headers(
            &values
                .iter()
                .map(|v| ("cache-control", *v))
                .collect::<Vec<_>>(),
        );
        assert_eq!(directives(&h), want, "{section}: {values:?}");
    }
    let pragma = headers(&[("pragma", "no-cache")]);
    assert!(
        request_directives(&pragma).no_cache,
        "§5.4: Pragma: no-cache without Cache-Control"
    );
    let both = headers(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]);
    assert!(
        !request_directives(&both).no_cache,
        "§5.4: Cache-Control wins over Pragma"
    );
}

#[test]
fn freshness_lifetime_cases() {
    let date = http_date(NOW);
    let hour_ago = http_date(NOW - 3600);
    let in_a_minute = http_date(NOW + 60);
    let ten_days_ago = http_date(NOW - 10 * 86400);
    let day = Some(Duration::from_secs(86400));
    // (status, headers, default_ttl, expected, section)
    type Case<'a> = (
        u16,
        Vec<(&'a str, &'a str)>,
        Option<Duration>,
        Option<(u64, Source)>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            200,
            vec![("cache-control", "max-age=60, s-maxage=5")],
            None,
            Some((5, Source::Explicit)),
            "§4.2.1: s-maxage first in a shared cache",
        ),
        (
            200,
            vec![("cache-control", "max-age=60")],
            None,
            Some((60, Source::Explicit)),
            "§4.2.1: max-age",
        ),
        (
            200,
            vec![
                ("cache-control", "max-age=60"),
                ("expires", &in_a_minute),
                ("date", &date),
            ],
            None,
            Some((60, Source::Explicit)),
            "§5.3: max-age over Expires",
        ),
        (
            200,
            vec![("expires", &in_a_minute), ("date", &date)],
            None,
            Some((60, Source::Explicit)),
            "§4.2.1: Expires - Date",
        ),
        (
            200,
            vec![("expires", &in_a_minute)],
            None,
            Some((60, Source::Explicit)),
            "§4.2.1: Expires without Date uses the receive time",
        ),
        (
            200,
            vec![("expires", "0")],
            None,
            Some((0, Source::Explicit)),
            "§5.3: an invalid Expires is in the past",
        ),
        (
            200,
            vec![("last-modified", &ten_days_ago), ("date", &date)],
            None,
            Some((86400, Source::LastModified)),
            "§4.2.2: 10% of the Last-Modified age, capped at a day",
        ),
        (
            200,
            vec![("last-modified", &hour_ago), ("date", &date)],
            None,
            Some((360, Source::LastModified)),
            "§4.2.2: 10% heuristic",
        ),
        (
            200,
            vec![("last-modified", &hour_ago)],
            day,
            Some((86400, Source::DefaultTtl)),
            "§4.2.2: the configured heuristic (default_ttl) wins",
        ),
        (200, vec![], None, None, "§4.2.2: no freshness information"),
        (
            200,
            vec![],
            day,
            Some((86400, Source::DefaultTtl)),
            "default_ttl for responses without freshness",
        ),
        (
            404,
            vec![],
            day,
            Some((86400, Source::DefaultTtl)),
            "RFC 9110 §15.1: 404 is cacheable by default",
        ),
        (
            302,
            vec![],
            day,
            None,
            "RFC 9110 §15.1: 302 is not cacheable by default",
        ),
        (
            302,
            vec![("cache-control", "max-age=10")],
            None,
            Some((10, Source::Explicit)),
            "§3: explicit freshness makes any final status storable",
        ),
        (
            500,
            vec![("cache-control", "public")],
            day,
            Some((86400, Source::DefaultTtl)),
            "§3: public allows a heuristic",
        ),
        (
            206,
            vec![],
            day,
            None,
            "weir does not store partial content",
        ),
    ];
    for (status, h, ttl, want, section) in cases {
        let h = headers(&h);
        let d = directives(&h);
        let got = freshness_lifetime(StatusCode::from_u16(status).unwrap(), &h, &d, ttl, NOW);
        assert_eq!(got, want, "{section}");
    }
}

#[test]
fn storability_cases() {
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
    let ttl = Some(Duration::from_secs(30));
    let cases: Vec<Case> = vec![
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
    ];
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
fn vary_cases() {
    assert_eq!(vary(&headers(&[])).unwrap(), Vec::<HeaderName>::new());
    let names = vary(&headers(&[
        ("vary", "Accept-Language, accept-encoding"),
        ("vary", "Accept-Language"),
    ]))
    .unwrap();
    assert_eq!(
        names.iter().map(HeaderName::as_str).collect::<Vec<_>>(),
        ["accept-encoding", "accept-language"],
        "§4.1: names are case-insensitive; order does not matter"
    );
    assert!(
        vary(&headers(&[("vary", "accept, *")])).is_err(),
        "§4.1: * anywhere"
    );
}

#[test]
fn age_cases() {
    // (headers, request time, response time, expected, section)
    type Case<'a> = (Vec<(&'a str, String)>, u64, u64, u64, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], NOW, NOW, 0, "§4.2.3: no Date, no Age"),
        (
            vec![("age", "30".into())],
            NOW - 2,
            NOW,
            32,
            "§4.2.3: Age plus the response delay",
        ),
        (
            vec![("date", http_date(NOW - 10))],
            NOW,
            NOW,
            10,
            "§4.2.3: apparent age",
        ),
        (
            vec![("date", http_date(NOW + 50))],
            NOW,
            NOW,
            0,
            "§4.2.3: a Date in the future is age 0",
        ),
        (
            vec![("date", http_date(NOW - 10)), ("age", "100".into())],
            NOW,
            NOW,
            100,
            "§4.2.3: the larger of the two",
        ),
        (
            vec![("age", "junk".into())],
            NOW,
            NOW,
            0,
            "§5.1: an invalid Age is ignored",
        ),
    ];
    for (h, req_t, resp_t, want, section) in cases {
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(initial_age(&headers(&h), req_t, resp_t), want, "{section}");
    }
}

#[test]
fn usable_cases() {
    let d = |s: &str| directives(&headers(&[("cache-control", s)]));
    let none = Directives::default();
    // (lifetime, age, response directives, request directives, expected, section)
    let cases: Vec<(u64, u64, Directives, Directives, Usable, &str)> = vec![
        (
            60,
            10,
            none.clone(),
            none.clone(),
            Usable::Fresh,
            "§4.2: fresh",
        ),
        (
            60,
            60,
            none.clone(),
            none.clone(),
            Usable::Revalidate,
            "§4.2: age = lifetime is stale",
        ),
        (
            60,
            10,
            none.clone(),
            d("no-cache"),
            Usable::Revalidate,
            "§5.2.1.4 request no-cache",
        ),
        (
            60,
            10,
            d("no-cache"),
            none.clone(),
            Usable::Revalidate,
            "§5.2.2.4 response no-cache",
        ),
        (
            60,
            10,
            none.clone(),
            d("max-age=5"),
            Usable::Revalidate,
            "§5.2.1.1 request max-age",
        ),
        (
            60,
            50,
            none.clone(),
            d("min-fresh=20"),
            Usable::Revalidate,
            "§5.2.1.3 min-fresh",
        ),
        (
            60,
            70,
            none.clone(),
            d("max-stale=20"),
            Usable::Fresh,
            "§5.2.1.2 max-stale=20",
        ),
        (
            60,
            90,
            none.clone(),
            d("max-stale=20"),
            Usable::Revalidate,
            "§5.2.1.2 beyond max-stale",
        ),
        (
            60,
            9999,
            none.clone(),
            d("max-stale"),
            Usable::Fresh,
            "§5.2.1.2 max-stale without a value",
        ),
        (
            60,
            70,
            d("must-revalidate"),
            d("max-stale"),
            Usable::Revalidate,
            "§5.2.2.2 must-revalidate beats max-stale",
        ),
        (
            60,
            70,
            d("stale-while-revalidate=30"),
            none.clone(),
            Usable::StaleWhileRevalidate,
            "RFC 5861 §3",
        ),
        (
            60,
            100,
            d("stale-while-revalidate=30"),
            none.clone(),
            Usable::Revalidate,
            "RFC 5861 §3: past the window",
        ),
    ];
    for (lifetime, age, resp, req, want, section) in cases {
        assert_eq!(usable(lifetime, age, &resp, &req), want, "{section}");
    }
    // stale-if-error (RFC 5861 §4; RFC 9111 §4.2.4)
    assert!(stale_if_error(60, 100, &d("stale-if-error=60"), &none));
    assert!(!stale_if_error(60, 200, &d("stale-if-error=60"), &none));
    assert!(
        stale_if_error(60, 100, &none, &d("stale-if-error=60")),
        "the request's stale-if-error"
    );
    assert!(!stale_if_error(
        60,
        100,
        &d("must-revalidate, stale-if-error=60"),
        &none
    ));
    assert!(!stale_if_error(60, 100, &none, &none));
}
