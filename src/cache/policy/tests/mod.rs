//! Table-driven cases of the RFC 9111 rules; each names its section.

use super::*;
use http::HeaderValue;

mod freshness;
mod storability;
mod usable;

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
