//! Sticky sessions through the real proxy: signed affinity cookies, their
//! failover, and their sharing between instances (issue 4).

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE};
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use support::*;
use weir::affinity::{unix_now, CookieKey};

const SECRET: &str = "test-secret-0123456789-abcdef";
const NAME: &str = "weir_s";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A config with one plain listener and one sticky group `g` over `servers`.
fn yaml(affinity: &str, servers: &[(&Upstream, u32)], sticky_extra: &str) -> String {
    ConfigYaml::new()
        .top(affinity)
        .routes("  - match:\n      path_prefix: /plain\n    group: plain\n  - group: g\n")
        .group("plain", "", &servers_yaml(&servers[..1]))
        .group(
            "g",
            &format!("    sticky:\n      cookie: {NAME}\n{sticky_extra}"),
            &servers_yaml(servers),
        )
        .build()
}

fn literal(secret: &str) -> String {
    format!("affinity:\n  secret: \"{secret}\"\n")
}

/// A client's cookie jar, holding the affinity cookie only.
#[derive(Debug, Default, Clone)]
struct Jar {
    value: Option<String>,
}

impl Jar {
    /// Applies the response's `Set-Cookie` for the affinity cookie, if any;
    /// returns the new value.
    fn store(&mut self, reply: &Reply) -> Option<String> {
        let v = set_cookie(reply)?;
        self.value = Some(v.clone());
        Some(v)
    }
}

/// The affinity cookie value set by `reply`, checking its attributes.
fn set_cookie(reply: &Reply) -> Option<String> {
    let mut found = None;
    for h in reply.headers.get_all(SET_COOKIE) {
        let s = h.to_str().unwrap();
        let Some(rest) = s.strip_prefix(&format!("{NAME}=")) else {
            continue;
        };
        let (value, attrs) = rest.split_once(';').unwrap();
        assert!(attrs.contains(" Path=/"), "{s}");
        assert!(attrs.contains(" HttpOnly"), "{s}");
        assert!(attrs.contains(" SameSite=Lax"), "{s}");
        assert!(found.is_none(), "two affinity Set-Cookie fields");
        found = Some(value.to_string());
    }
    found
}

/// GET `path` with the jar's cookie (and `extra` cookies before it).
async fn jar_get(client: &HttpClient, addr: SocketAddr, jar: &mut Jar, extra: &str) -> Reply {
    let mut req = Request::get(format!("http://{addr}/app"));
    let mut cookie = extra.to_string();
    if let Some(v) = &jar.value {
        if !cookie.is_empty() {
            cookie.push_str("; ");
        }
        cookie.push_str(&format!("{NAME}={v}"));
    }
    if !cookie.is_empty() {
        req = req.header(COOKIE, cookie);
    }
    let reply = send(client, req.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    jar.store(&reply);
    reply
}

fn decode(secret: &str, value: &str) -> (String, u64) {
    let d = CookieKey::derive(secret.as_bytes(), NAME)
        .decode(value.as_bytes())
        .expect("weir's cookie verifies under the secret");
    (String::from_utf8(d.id().to_vec()).unwrap(), d.issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stay_pinned_and_spread_by_weight() {
    let (a, b, c) = (
        spawn_upstream("a").await,
        spawn_upstream("b").await,
        spawn_upstream("c").await,
    );
    let weights = [3u32, 2, 1];
    let proxy = start_proxy(&yaml(
        &literal(SECRET),
        &[(&a, weights[0]), (&b, weights[1]), (&c, weights[2])],
        "      max_age: 1h\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();

    const CLIENTS: usize = 200;
    const REQUESTS: usize = 20;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        tasks.spawn(async move {
            let mut jar = Jar::default();
            let first = jar_get(&client, addr, &mut jar, "").await;
            let server = first.server().unwrap();
            let value = jar.value.clone().expect("first answer pins");
            assert_eq!(decode(SECRET, &value).0, server);
            for _ in 1..REQUESTS {
                let r = jar_get(&client, addr, &mut jar, "").await;
                assert_eq!(r.server().unwrap(), server, "client moved");
                assert!(set_cookie(&r).is_none(), "cookie re-set although unchanged");
            }
            server
        });
    }
    let mut per_server: HashMap<String, usize> = HashMap::new();
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = tasks.join_next().await {
            *per_server.entry(r.unwrap()).or_default() += 1;
        }
    })
    .await;
    assert!(all.is_ok(), "clients finished in time");
    let total: u32 = weights.iter().sum();
    for (name, w) in [("a", weights[0]), ("b", weights[1]), ("c", weights[2])] {
        let expected = CLIENTS as f64 * f64::from(w) / f64::from(total);
        let got = per_server.get(name).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() <= expected * 0.10,
            "server {name}: {got} clients, expected {expected:.1} ± 10% ({per_server:?})"
        );
    }
    assert_eq!(a.hits() + b.hits() + c.hits(), CLIENTS * REQUESTS);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn tampered_forged_expired_and_unknown_cookies_are_rebalanced() {
    let (a, b) = (spawn_upstream("a").await, spawn_upstream("b").await);
    let proxy = start_proxy(&yaml(
        &literal(SECRET),
        &[(&a, 1), (&b, 1)],
        "      max_age: 1h\n",
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    let key = CookieKey::derive(SECRET.as_bytes(), NAME);
    let now = unix_now();

    let valid = key.encode("b", now);
    let mut tampered = valid.clone().into_bytes();
    tampered[5] = if tampered[5] == b'x' { b'y' } else { b'x' };
    let bad = [
        ("tampered", String::from_utf8(tampered).unwrap()),
        ("expired", key.encode("b", now - 7200)),
        (
            "forged with another secret",
            CookieKey::derive(b"attacker-secret-0123456789", NAME).encode("b", now),
        ),
        (
            "minted for another cookie name",
            CookieKey::derive(SECRET.as_bytes(), "other").encode("b", now),
        ),
        ("unknown server", key.encode("gone", now)),
        ("malformed", "%%%not-base64%%%".to_string()),
        ("empty", String::new()),
    ];
    for (what, value) in bad {
        let mut jar = Jar {
            value: Some(value.clone()),
        };
        let r = jar_get(&client, addr, &mut jar, "").await;
        let new = set_cookie(&r).unwrap_or_else(|| panic!("{what}: no new cookie"));
        assert_ne!(new, value, "{what}");
        let (id, issued) = decode(SECRET, &new);
        assert_eq!(
            Some(id),
            r.server(),
            "{what}: new cookie names the server that answered"
        );
        assert!(issued >= now, "{what}: fresh issue time");
        // The new cookie holds.
        let again = jar_get(&client, addr, &mut jar, "").await;
        assert_eq!(again.server(), r.server(), "{what}");
        assert!(set_cookie(&again).is_none(), "{what}");
    }

    // The valid one is honored without a new cookie, 10 times in a row
    // (round robin alone would alternate).
    let mut jar = Jar { value: Some(valid) };
    for _ in 0..10 {
        let r = jar_get(&client, addr, &mut jar, "").await;
        assert_eq!(r.server().as_deref(), Some("b"));
        assert!(set_cookie(&r).is_none());
    }
    // Old enough that less than half of max_age remains: refreshed, same server.
    let mut jar = Jar {
        value: Some(key.encode("a", now - 1900)),
    };
    let r = jar_get(&client, addr, &mut jar, "").await;
    assert_eq!(r.server().as_deref(), Some("a"));
    let refreshed = set_cookie(&r).expect("refreshed");
    assert_eq!(decode(SECRET, &refreshed).0, "a");
    assert!(decode(SECRET, &refreshed).1 >= now);
    assert!(r.headers[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=3600"));
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn pinned_server_down_fails_over_and_the_client_stays_after_it_returns() {
    let (a, b) = (spawn_upstream("a").await, spawn_upstream("b").await);
    let proxy = start_proxy(&yaml(&literal(SECRET), &[(&a, 1), (&b, 1)], "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();

    // Four clients: round robin pins two on each server.
    let mut jars = vec![Jar::default(); 4];
    let mut home = Vec::new();
    for jar in &mut jars {
        home.push(jar_get(&client, addr, jar, "").await.server().unwrap());
    }
    let on_a: Vec<usize> = (0..4).filter(|&i| home[i] == "a").collect();
    let on_b: Vec<usize> = (0..4).filter(|&i| home[i] == "b").collect();
    assert_eq!((on_a.len(), on_b.len()), (2, 2), "{home:?}");
    let (moving, idle) = (on_a[0], on_a[1]);

    a.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The pinned server refuses connections: the same request fails over to b
    // (retries: 1 by default) and re-pins there.
    let r = jar_get(&client, addr, &mut jars[moving], "").await;
    assert_eq!(r.server().as_deref(), Some("b"));
    let new = set_cookie(&r).expect("re-pinned");
    assert_eq!(decode(SECRET, &new).0, "b");
    for _ in 0..5 {
        let r = jar_get(&client, addr, &mut jars[moving], "").await;
        assert_eq!(r.server().as_deref(), Some("b"));
        assert!(set_cookie(&r).is_none());
    }

    // a comes back: clients stay where they are.
    a.restart().await;
    let hits_before = a.hits();
    for _ in 0..5 {
        let r = jar_get(&client, addr, &mut jars[moving], "").await;
        assert_eq!(r.server().as_deref(), Some("b"), "moved client stays on b");
        assert!(set_cookie(&r).is_none());
        for &i in &on_b {
            let r = jar_get(&client, addr, &mut jars[i], "").await;
            assert_eq!(r.server().as_deref(), Some("b"));
            assert!(set_cookie(&r).is_none());
        }
        // The client that was idle during the outage still holds its pin to a.
        let r = jar_get(&client, addr, &mut jars[idle], "").await;
        assert_eq!(r.server().as_deref(), Some("a"));
        assert!(set_cookie(&r).is_none());
    }
    assert_eq!(a.hits() - hits_before, 5);

    // Marked down (as health checks do): failover without trying a at all.
    let state = proxy.registry().state(&Arc::from("g"), &Arc::from("a"));
    state.set_healthy(false);
    let hits_before = a.hits();
    let r = jar_get(&client, addr, &mut jars[idle], "").await;
    assert_eq!(r.server().as_deref(), Some("b"));
    assert_eq!(decode(SECRET, &set_cookie(&r).unwrap()).0, "b");
    assert_eq!(a.hits(), hits_before);
    state.set_healthy(true);
    let r = jar_get(&client, addr, &mut jars[idle], "").await;
    assert_eq!(r.server().as_deref(), Some("b"), "stays on its new server");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn instances_sharing_a_secret_agree_and_others_do_not() {
    let (a, b, c) = (
        spawn_upstream("a").await,
        spawn_upstream("b").await,
        spawn_upstream("c").await,
    );
    let servers = [(&a, 1), (&b, 1), (&c, 1)];
    // The shared secret comes from the environment, as in production.
    let env = "WEIR_TEST_AFFINITY_SECRET_SHARED";
    std::env::set_var(env, SECRET);
    let from_env = format!("affinity:\n  secret_env: {env}\n");
    let one = start_proxy(&yaml(&from_env, &servers, "")).await;
    let two = start_proxy(&yaml(&literal(SECRET), &servers, "")).await;
    let other = start_proxy(&yaml(&literal("a-different-secret-0123456"), &servers, "")).await;
    // Same secret, but server a is no longer configured.
    let smaller = start_proxy(&yaml(&literal(SECRET), &[(&b, 1), (&c, 1)], "")).await;
    let client = client();

    for i in 0..12 {
        let mut jar = Jar::default();
        let home = jar_get(&client, one.local_addr("http").unwrap(), &mut jar, "")
            .await
            .server()
            .unwrap();
        // Rotate instance two's round robin so that, ignoring the cookie, it
        // would often pick another server.
        for _ in 0..i % 3 {
            get(two.local_addr("http").unwrap(), "/app").await;
        }
        let mut j = jar.clone();
        let r = jar_get(&client, two.local_addr("http").unwrap(), &mut j, "").await;
        assert_eq!(r.server().unwrap(), home, "same secret: same server");
        assert!(set_cookie(&r).is_none(), "same secret: cookie honored");

        let mut j = jar.clone();
        let r = jar_get(&client, other.local_addr("http").unwrap(), &mut j, "").await;
        let new = set_cookie(&r).expect("different secret: cookie ignored and replaced");
        assert_eq!(
            Some(decode("a-different-secret-0123456", &new).0),
            r.server()
        );

        let mut j = jar.clone();
        let r = jar_get(&client, smaller.local_addr("http").unwrap(), &mut j, "").await;
        if home == "a" {
            assert_ne!(r.server().unwrap(), "a");
            assert!(set_cookie(&r).is_some(), "removed server: re-pinned");
        } else {
            assert_eq!(r.server().unwrap(), home);
            assert!(set_cookie(&r).is_none());
        }
    }
    for p in [one, two, other, smaller] {
        assert!(p.shutdown().await);
    }
}

#[tokio::test]
async fn upstream_never_sees_the_affinity_cookie() {
    let (a, b) = (spawn_upstream("a").await, spawn_upstream("b").await);
    let proxy = start_proxy(&yaml(&literal(SECRET), &[(&a, 1), (&b, 1)], "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let client = client();
    let seen_cookies = |r: &Reply| {
        let up = if r.server().as_deref() == Some("a") {
            &a
        } else {
            &b
        };
        let seen = up.last_seen().unwrap();
        seen.headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    let mut jar = Jar::default();
    jar_get(&client, addr, &mut jar, "").await;
    let r = jar_get(&client, addr, &mut jar, "z=1; session=abc; a=\"q\"").await;
    assert_eq!(seen_cookies(&r), ["z=1; session=abc; a=\"q\""]);
    // Only the affinity cookie: no Cookie field upstream at all.
    let r = jar_get(&client, addr, &mut jar, "").await;
    assert!(seen_cookies(&r).is_empty());
    // In the middle, and an invalid one too: both removed.
    let v = jar.value.clone().unwrap();
    let req = Request::get(format!("http://{addr}/app"))
        .header(COOKIE, format!("x=1; {NAME}=bogus; y=2; {NAME}={v}; w=3"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&client, req).await;
    assert_eq!(seen_cookies(&r), ["x=1; y=2; w=3"]);
    assert!(set_cookie(&r).is_none(), "the valid one was used");

    // HTTP/2: cookie crumbs in separate fields; the rest joined in order.
    let h2 = h2c_client();
    let req = Request::get(format!("http://{addr}/app"))
        .header(COOKIE, "x=1")
        .header(COOKIE, format!("{NAME}={v}"))
        .header(COOKIE, "y=2; w=3")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&h2, req).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(seen_cookies(&r), ["x=1; y=2; w=3"]);
    assert!(set_cookie(&r).is_none());

    // A group without sticky leaves every cookie alone, the name included.
    let req = Request::get(format!("http://{addr}/plain"))
        .header(COOKIE, format!("x=1; {NAME}={v}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&client, req).await;
    assert_eq!(seen_cookies(&r), [format!("x=1; {NAME}={v}")]);
    assert!(set_cookie(&r).is_none());
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn http2_clients_are_pinned() {
    let (a, b, c) = (
        spawn_upstream("a").await,
        spawn_upstream("b").await,
        spawn_upstream("c").await,
    );
    // No affinity section: a random per-process secret (warned) still pins.
    let proxy = start_proxy(&yaml("", &[(&a, 1), (&b, 1), (&c, 1)], "")).await;
    let addr = proxy.local_addr("http").unwrap();
    let h2 = h2c_client();
    let mut homes = Vec::new();
    for _ in 0..9 {
        let mut jar = Jar::default();
        let first = jar_get(&h2, addr, &mut jar, "").await;
        assert_eq!(first.version, http::Version::HTTP_2);
        assert!(jar.value.is_some());
        let home = first.server().unwrap();
        for _ in 0..5 {
            let r = jar_get(&h2, addr, &mut jar, "").await;
            assert_eq!(r.server().unwrap(), home);
            assert!(set_cookie(&r).is_none());
        }
        homes.push(home);
    }
    homes.sort();
    homes.dedup();
    assert_eq!(homes, ["a", "b", "c"], "clients spread over every server");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn secure_attribute_over_tls_only() {
    let a = spawn_upstream("a").await;
    let proxy = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\n  - name: https\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        - cert: certs-dev/localhost.crt\n          key: certs-dev/localhost.key\n{}routes:\n  - group: g\ngroups:\n  g:\n    sticky:\n      cookie: {NAME}\n      max_age: 2h\n    servers:\n{}",
        literal(SECRET),
        servers_yaml(&[(&a, 1)])
    ))
    .await;

    let plain = get(proxy.local_addr("http").unwrap(), "/").await;
    let plain = plain.headers[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        plain.ends_with("; Path=/; Max-Age=7200; HttpOnly; SameSite=Lax"),
        "{plain}"
    );

    let tls = tls_get(proxy.local_addr("https").unwrap()).await;
    assert_eq!(tls.status(), 200);
    let tls = tls.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        tls.ends_with("; Path=/; Max-Age=7200; HttpOnly; SameSite=Lax; Secure"),
        "{tls}"
    );
    assert!(proxy.shutdown().await);
}

/// GET / over TLS (trusting certs-dev/ca.crt, SNI localhost) with HTTP/1.1.
async fn tls_get(addr: SocketAddr) -> http::Response<hyper::body::Incoming> {
    let config = support::tls::client_config(support::tls::dev_roots(), &[]);
    let tls = support::tls::connect(addr, config, "localhost").await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header(http::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_cookie_jar_session() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("NOTICE: curl is not installed; skipping the cookie-jar test");
        return;
    }
    let (a, b, c) = (
        spawn_upstream("a").await,
        spawn_upstream("b").await,
        spawn_upstream("c").await,
    );
    let proxy = start_proxy(&yaml(
        &literal(SECRET),
        &[(&a, 1), (&b, 1), (&c, 1)],
        "      max_age: 1h\n",
    ))
    .await;
    let url = format!(
        "http://127.0.0.1:{}/app",
        proxy.local_addr("http").unwrap().port()
    );
    let dir = std::env::temp_dir().join(format!("weir-affinity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jar = dir.join("cookies.txt");
    let _ = std::fs::remove_file(&jar);

    let mut answers = Vec::new();
    for _ in 0..6 {
        let (url, jar) = (url.clone(), jar.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-s", "--max-time", "10", "-c"])
                .arg(&jar)
                .arg("-b")
                .arg(&jar)
                .arg(&url)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "curl failed: {out:?}");
        answers.push(String::from_utf8(out.stdout).unwrap());
    }
    let jar_text = std::fs::read_to_string(&jar).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        jar_text.contains(NAME),
        "the jar holds the cookie:\n{jar_text}"
    );
    assert!(
        ["a", "b", "c"].contains(&answers[0].as_str()),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| *s == answers[0]),
        "every answer from one server: {answers:?}"
    );
    assert!(proxy.shutdown().await);
}
