//! Header rules (`routes[].request_headers`, `routes[].response_headers`,
//! issue 16 point 5): `remove`, then `set`, then `add`, after weir's own
//! proxy headers (so `x-forwarded-proto` changes only when a rule names
//! it); the server's `Server` and `X-Powered-By` can be removed. Bad names
//! and values are config errors naming the key.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::*;

async fn chatty() -> Upstream {
    spawn_upstream_with("chatty", |_req: Request<Incoming>| async move {
        let mut r = http::Response::new(Full::new(Bytes::from_static(b"hi")));
        *r.status_mut() = StatusCode::OK;
        let h = r.headers_mut();
        h.insert("server", "Apache/2.4.1".parse().unwrap());
        h.insert("x-powered-by", "PHP/5.6".parse().unwrap());
        h.insert("x-frame-options", "ALLOW".parse().unwrap());
        h.append("x-tag", "origin".parse().unwrap());
        r
    })
    .await
}

fn config(up: &Upstream) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:
  - name: rules
    match: {{ path_prefix: /rules }}
    group: g
    request_headers:
      set: {{ x-env: prod, x-forwarded-proto: https }}
      add: {{ x-tag: edge }}
      remove: [x-debug]
    response_headers:
      set: {{ strict-transport-security: \"max-age=31536000\", x-frame-options: DENY }}
      add: {{ x-tag: weir }}
      remove: [server, x-powered-by]
  - name: plain
    group: g
groups:
  g:
    servers:
      - address: {}
",
        up.addr
    )
}

#[tokio::test]
async fn rules_add_set_and_remove_as_written() {
    let up = chatty().await;
    let weir = start_proxy(&config(&up)).await;
    let addr = weir.local_addr("http").unwrap();
    let sent = [
        ("x-debug", "1"),
        ("x-env", "dev"),
        ("x-tag", "client"),
        ("x-forwarded-proto", "gopher"),
    ];
    let r = request_host(addr, "GET", "example.com", "/rules/x", &sent).await;
    assert_eq!(r.status, 200);
    let seen = up.last_seen().unwrap().headers;
    assert!(!seen.contains_key("x-debug"), "removed");
    assert_eq!(
        seen.get_all("x-env").iter().collect::<Vec<_>>(),
        ["prod"],
        "set replaces"
    );
    assert_eq!(
        seen.get_all("x-tag").iter().collect::<Vec<_>>(),
        ["client", "edge"],
        "add appends"
    );
    // The rule overrides weir's own x-forwarded-proto (only because it names it).
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");

    assert!(!r.headers.contains_key("server"));
    assert!(!r.headers.contains_key("x-powered-by"));
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(
        r.headers.get_all("x-tag").iter().collect::<Vec<_>>(),
        ["origin", "weir"]
    );
    assert_eq!(r.text(), "hi");

    // Without rules, weir's proxy headers win over the client's and the
    // server's headers pass through.
    let r = request_host(addr, "GET", "example.com", "/other", &sent).await;
    let seen = up.last_seen().unwrap().headers;
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-debug"], "1");
    assert_eq!(r.headers["server"], "Apache/2.4.1");
    assert_eq!(r.headers["x-powered-by"], "PHP/5.6");
    weir.shutdown().await;
}

#[test]
fn bad_names_and_values_are_config_errors_naming_the_key() {
    let base = "listeners:\n  - address: 127.0.0.1:0\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9\nroutes:\n  - group: g\n";
    for (rule, want) in [
        (
            "    request_headers:\n      set: { \"x bad\": v }\n",
            "test.yaml:10:12: routes[0].request_headers.set.x bad: \"x bad\" is not a valid header name",
        ),
        (
            "    response_headers:\n      add: { x-ok: \"caf\u{e9}\" }\n",
            "routes[0].response_headers.add.x-ok: \"caf\u{e9}\" is not a valid header value",
        ),
        (
            "    response_headers:\n      remove: [connection]\n",
            "routes[0].response_headers.remove[0]: connection frames the message",
        ),
        (
            "    request_headers:\n      sett: { a: b }\n",
            "unknown field `sett`",
        ),
    ] {
        let yaml = format!("{base}{rule}");
        let err = weir::config::load_str(&yaml, &root().join("test.yaml"))
            .expect_err(rule)
            .to_string();
        assert!(err.contains(want), "{rule}: {err}");
    }
}
