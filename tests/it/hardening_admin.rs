//! The admin API cannot be driven cross-site (issue 13, item 7): cross-site
//! POSTs get 403, a Host that is not localhost or an IP gets 403 (DNS
//! rebinding), and with `admin.token` set mutating endpoints need the bearer token.

use crate::support;

use bytes::Bytes;
use http_body_util::Full;
use support::*;

const TOKEN: &str = "s3cret-admin-token-0123456789";

fn yaml(upstream: &Upstream, admin_extra: &str) -> String {
    ConfigYaml::new()
        .listener_name(Some("web"))
        .admin(admin_extra)
        .group("g", "", &servers_yaml(&[(upstream, 1)]))
        .build()
}

async fn admin(proxy: &weir::Running, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.admin_addr().unwrap()));
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    send(&client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&a, "")).await;
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
    ] {
        for path in [
            "/reload",
            "/groups/g/servers/a/drain",
            "/groups/g/servers/a/enable",
        ] {
            let r = admin(&proxy, "POST", path, headers).await;
            assert_eq!(r.status, 403, "{path} {headers:?}: {}", r.text());
        }
    }
    assert!(!proxy.snapshot().groups[0].servers[0].state.is_drained());
    // Same-origin (a browser on the admin page itself) and curl pass.
    let own = format!("http://{}", proxy.admin_addr().unwrap());
    let r = admin(
        &proxy,
        "POST",
        "/groups/g/servers/a/drain",
        &[("origin", &own)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin(&proxy, "POST", "/groups/g/servers/a/enable", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn dns_rebinding_hosts_are_refused() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&a, "")).await;
    let port = proxy.admin_addr().unwrap().port();
    let evil = format!("rebind.evil.example:{port}");
    assert_eq!(
        admin(&proxy, "GET", "/status", &[("host", &evil)])
            .await
            .status,
        403
    );
    assert_eq!(
        admin(
            &proxy,
            "POST",
            "/groups/g/servers/a/drain",
            &[("host", &evil)]
        )
        .await
        .status,
        403
    );
    let local = format!("localhost:{port}");
    assert_eq!(
        admin(&proxy, "GET", "/status", &[("host", &local)])
            .await
            .status,
        200
    );
    assert_eq!(admin(&proxy, "GET", "/metrics", &[]).await.status, 200);
}

#[tokio::test]
async fn the_admin_token_guards_mutating_endpoints() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&yaml(&a, &format!("  token: {TOKEN}\n"))).await;
    let drain = "/groups/g/servers/a/drain";
    let r = admin(&proxy, "POST", drain, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = admin(
        &proxy,
        "POST",
        drain,
        &[("authorization", "Bearer wrong-token-0123456789xx")],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = admin(&proxy, "POST", "/reload", &[]).await;
    assert_eq!(r.status, 401);
    assert!(!proxy.snapshot().groups[0].servers[0].state.is_drained());
    let bearer = format!("Bearer {TOKEN}");
    let r = admin(&proxy, "POST", drain, &[("authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(proxy.snapshot().groups[0].servers[0].state.is_drained());
    // A token does not excuse a cross-site request.
    let r = admin(
        &proxy,
        "POST",
        "/groups/g/servers/a/enable",
        &[
            ("authorization", &bearer),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
    // Reads need no token.
    assert_eq!(admin(&proxy, "GET", "/metrics", &[]).await.status, 200);
}

#[test]
fn token_from_env_and_file() {
    let dir = TempDir::new("admin-token");
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let base = "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:1\nadmin:\n  address: 127.0.0.1:0\n";
    let c = config(&format!("{base}  token_file: {}\n", file.display()));
    assert_eq!(c.admin_token.as_deref(), Some(TOKEN.as_bytes()));
    std::env::set_var("WEIR_TEST_ADMIN_TOKEN_13", TOKEN);
    let c = config(&format!("{base}  token_env: WEIR_TEST_ADMIN_TOKEN_13\n"));
    assert_eq!(c.admin_token.as_deref(), Some(TOKEN.as_bytes()));
    let root = support::root().join("test.yaml");
    for (extra, msg) in [
        ("  token: short\n", "at least 16 bytes"),
        (
            "  token_env: WEIR_TEST_ADMIN_TOKEN_UNSET_13\n",
            "is not set",
        ),
        ("  token_file: /dev/zero\n", "not a regular file"),
        (
            &format!("  token: {TOKEN}\n  token_env: WEIR_TEST_ADMIN_TOKEN_13\n") as &str,
            "at most one",
        ),
    ] {
        let e = weir::config::load_str(&format!("{base}{extra}"), &root).unwrap_err();
        assert!(e.to_string().contains(msg), "{extra}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
