//! `freshness_lifetime` (RFC 9111 §4.2.1, §4.2.2): explicit lifetimes,
//! heuristics and the default of each status.

use super::*;

// (status, headers, default_ttl, expected, section)
type Case<'a> = (
    u16,
    Vec<(&'a str, &'a str)>,
    Option<Duration>,
    Option<(u64, Source)>,
    &'a str,
);

fn check(cases: Vec<Case>) {
    for (status, h, ttl, want, section) in cases {
        let h = headers(&h);
        let d = directives(&h);
        let got = freshness_lifetime(StatusCode::from_u16(status).unwrap(), &h, &d, ttl, NOW);
        assert_eq!(got, want, "{section}");
    }
}

#[test]
fn explicit_lifetimes() {
    let date = http_date(NOW);
    let in_a_minute = http_date(NOW + 60);
    check(vec![
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
    ]);
}

#[test]
fn heuristic_lifetimes() {
    let date = http_date(NOW);
    let hour_ago = http_date(NOW - 3600);
    let ten_days_ago = http_date(NOW - 10 * 86400);
    let day = Some(Duration::from_secs(86400));
    check(vec![
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
    ]);
}

#[test]
fn lifetimes_by_status() {
    let day = Some(Duration::from_secs(86400));
    check(vec![
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
    ]);
}
