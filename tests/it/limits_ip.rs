//! `routes[].allow` / `routes[].deny` by source address: clients bind
//! 127.0.0.2 and 127.0.0.3.

use crate::limits_support;
use crate::support;

use limits_support::{get_from, metric, metrics};
use support::{spawn_upstream, start_proxy};

#[tokio::test]
async fn allow_and_deny_by_source_address() {
    let up = spawn_upstream("a").await;
    let yaml = format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nroutes:\n\
         \x20 - name: allowed\n    match: {{ path_prefix: /allowed }}\n    group: g\n    allow: [127.0.0.2/32, \"2001:db8::/32\"]\n\
         \x20 - name: denied\n    match: {{ path_prefix: /denied }}\n    group: g\n    deny: [127.0.0.3]\n\
         \x20 - name: both\n    match: {{ path_prefix: /both }}\n    group: g\n    allow: [127.0.0.0/8]\n    deny: [127.0.0.3/32]\n\
         \x20 - name: open\n    group: g\n\
         groups:\n  g:\n    servers:\n      - address: {}\n",
        up.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("http").unwrap();
    let cases = [
        ("127.0.0.2", "/allowed", 200),
        ("127.0.0.3", "/allowed", 403),
        ("127.0.0.1", "/allowed", 403),
        ("127.0.0.2", "/denied", 200),
        ("127.0.0.3", "/denied", 403),
        ("127.0.0.2", "/both", 200),
        ("127.0.0.3", "/both", 403),
        ("127.0.0.3", "/open", 200),
    ];
    for (from, path, want) in cases {
        let r = get_from(from, addr, path).await;
        assert_eq!(r.status.as_u16(), want, "{from} {path}: {}", r.text());
        if want == 403 {
            assert_eq!(r.text(), "403 Forbidden\n");
        }
    }
    assert_eq!(up.hits(), 4, "refused requests never reach the upstream");
    let m = metrics(&proxy).await;
    assert_eq!(
        metric(&m, "weir_ip_denied_total{route=\"allowed\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "weir_ip_denied_total{route=\"denied\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "weir_ip_denied_total{route=\"both\"}"),
        Some(1.0),
        "{m}"
    );
    proxy.shutdown().await;
}
