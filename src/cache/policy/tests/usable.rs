//! `usable` and `stale_if_error` (RFC 9111 §4.2, §5.2; RFC 5861): whether
//! a stored response answers a request as it is.

use super::*;

// (lifetime, age, response directives, request directives, expected, section)
type Case<'a> = (u64, u64, Directives, Directives, Usable, &'a str);

fn d(s: &str) -> Directives {
    directives(&headers(&[("cache-control", s)]))
}

fn check(cases: Vec<Case>) {
    for (lifetime, age, resp, req, want, section) in cases {
        assert_eq!(usable(lifetime, age, &resp, &req), want, "{section}");
    }
}

#[test]
fn fresh_until_a_limit() {
    let none = Directives::default();
    check(vec![
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
    ]);
}

#[test]
fn max_stale() {
    let none = Directives::default();
    check(vec![
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
    ]);
}

#[test]
fn stale_while_revalidate() {
    let none = Directives::default();
    check(vec![
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
    ]);
}

#[test]
fn stale_if_error_window() {
    let none = Directives::default();
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
