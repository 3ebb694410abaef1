//! The weir demo: starts the upstream servers that a config names (by default
//! `routes.example.yaml`: a `repositories` cluster of 3 servers with weights,
//! and `profile` / `profile_eu` clusters of 2 chosen by a JWT `region` claim)
//! and weir on that config, then prints curl and hey commands to try, with
//! ready-made bearer tokens (signed with the config's HS256 dev secret, valid
//! 24 h). Ctrl-C stops everything gracefully.
//!
//! ```text
//! cargo run --release --example demo [-- CONFIG]
//! ```
//!
//! The example config reads the sticky-cookie secret from
//! `WEIR_AFFINITY_SECRET`; when it is unset the demo sets a fixed dev-only
//! value (and says so), so the demo starts as is.
//!
//! Logs: `RUST_LOG` as usual; the default hides the per-request access log
//! (`info,weir::access=off`) so that a `hey` run does not flood the terminal.

#[path = "support/upstream_server.rs"]
mod upstream_server;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Dev-only affinity secret used when `WEIR_AFFINITY_SECRET` is unset.
const DEV_AFFINITY_SECRET: &str = "weir-demo-dev-only-affinity-secret";

fn main() -> ExitCode {
    // Before any thread exists: the environment is process-global.
    if std::env::var_os("WEIR_AFFINITY_SECRET").is_none() {
        std::env::set_var("WEIR_AFFINITY_SECRET", DEV_AFFINITY_SECRET);
        println!(
            "WEIR_AFFINITY_SECRET is unset: the demo uses a fixed dev-only secret for sticky cookies"
        );
    }
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,weir::access=off"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("routes.example.yaml"));
    let tokens = demo_tokens(&path);
    let config = match weir::config::load_file(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };

    // One demo upstream per configured server, named by its id.
    for group in &config.groups {
        for server in &group.servers {
            let addr: Option<SocketAddr> = server
                .address
                .as_str()
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next());
            let Some(addr) = addr else {
                eprintln!("cannot resolve {}", server.address);
                return ExitCode::FAILURE;
            };
            if let Err(e) = upstream_server::bind(addr, &server.id).await {
                eprintln!("cannot start upstream {} on {addr}: {e}", server.id);
                return ExitCode::FAILURE;
            }
            tracing::info!(group = %group.name, server = %server.id, %addr, weight = server.weight, "demo upstream started");
        }
    }

    let running = match weir::Proxy::new(config).start().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start weir: {e}");
            return ExitCode::FAILURE;
        }
    };

    let https = running.local_addr("https");
    let http = running.local_addr("http");
    println!();
    println!("weir is running on {}. Try:", path.display());
    if let Some(a) = https {
        let port = a.port();
        println!("  curl --cacert certs-dev/ca.crt https://localhost:{port}/repositories/42");
        println!("  curl --http2 --cacert certs-dev/ca.crt https://localhost:{port}/profile/me -v");
        println!("  hey -n 20000 -c 50 https://localhost:{port}/repositories/1   # hey skips certificate checks");
    }
    if let Some(a) = http {
        let port = a.port();
        println!("  curl http://localhost:{port}/profile/me");
        println!("  curl -s -c jar.txt -b jar.txt http://localhost:{port}/repositories/1   # sticky: same server every time");
        println!("  curl --http2-prior-knowledge http://localhost:{port}/repositories/7");
        println!("  curl -i http://localhost:{port}/nowhere              # 404: no route");
        println!("  hey -n 20000 -c 50 http://localhost:{port}/repositories/1");
    }
    if let (Some(a), false) = (http, tokens.is_empty()) {
        let port = a.port();
        println!();
        println!("JWT routing (docs/jwt.md); these tokens are valid for 24 h:");
        for (region, token) in &tokens {
            println!("  TOKEN_{}={token}", region.to_ascii_uppercase());
        }
        for (region, _) in &tokens {
            println!(
                "  curl -H \"Authorization: Bearer $TOKEN_{}\" http://localhost:{port}/profile/me   # region {region}",
                region.to_ascii_uppercase()
            );
        }
        println!("  curl -i -H \"Authorization: Bearer not-a-token\" http://localhost:{port}/account   # 401 invalid_token");
    }
    println!("Ctrl-C stops the demo.");
    println!();

    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping");
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// Mints one token per demo region (`eu`, `us`) with the first HS256/384/512
/// key of the config's `jwt` section that has an inline `secret` (or
/// `secret_env`), with the configured issuer and audience, valid 24 h.
/// Empty when the config has no such key.
fn demo_tokens(path: &std::path::Path) -> Vec<(&'static str, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(raw) = weir::config::parse(&text, path) else {
        return Vec::new();
    };
    let Some(jwt) = raw.jwt.map(|j| j.value) else {
        return Vec::new();
    };
    let key = jwt.keys.iter().find_map(|k| {
        let alg: jsonwebtoken::Algorithm = k.algorithm.value.parse().ok()?;
        let secret = match (&k.secret, &k.secret_env) {
            (Some(s), _) => s.value.clone(),
            (None, Some(env)) => std::env::var(&env.value).ok()?,
            _ => return None,
        };
        matches!(
            alg,
            jsonwebtoken::Algorithm::HS256
                | jsonwebtoken::Algorithm::HS384
                | jsonwebtoken::Algorithm::HS512
        )
        .then(|| (alg, secret, k.kid.as_ref().map(|k| k.value.clone())))
    });
    let Some((alg, secret, kid)) = key else {
        return Vec::new();
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid;
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let now = jsonwebtoken::get_current_timestamp();
    ["eu", "us"]
        .into_iter()
        .filter_map(|region| {
            let mut claims = serde_json::json!({
                "sub": format!("demo-user-{region}"),
                "region": region,
                "iat": now,
                "exp": now + 24 * 3600,
            });
            if let Some(iss) = &jwt.issuer {
                claims["iss"] = iss.value.clone().into();
            }
            if let Some(aud) = &jwt.audience {
                claims["aud"] = aud.value.clone().into();
            }
            let token = jsonwebtoken::encode(&header, &claims, &key).ok()?;
            Some((region, token))
        })
        .collect()
}
