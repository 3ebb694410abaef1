//! The admin listener (`admin.address`): plain HTTP/1.1 for operators.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus/OpenMetrics text ([`prometheus::render`]) |
//! | `GET /status` | JSON: groups, servers, health, drained, in-flight, requests |
//! | `GET /healthz` | `200 ok` while the process serves (liveness) |
//! | `POST /reload` | re-reads the config file; `200` or `400` with the errors |
//! | `POST /groups/{group}/servers/{id}/drain` | the server gets no new requests |
//! | `POST /groups/{group}/servers/{id}/enable` | undoes `drain` |
//! | `POST /cache/purge[?prefix=/path]` | empties the response cache (or the entries whose path starts with the prefix) |
//!
//! Every request is checked first ([`auth`]): a `Host` that is not
//! `localhost` or an IP gets `403` (DNS rebinding); a mutating request from
//! another site gets `403`; with `admin.token` set, a mutating request
//! without `Authorization: Bearer <token>` gets `401`.
//!
//! Other paths get `404`, a wrong method `405` with `Allow`. Drain and enable
//! are runtime changes: they last until the server leaves the config (a
//! reload keeps them for servers whose id is unchanged) or the process
//! restarts; write lasting changes to the file.

pub mod auth;
mod edge_metrics;
mod limits_metrics;
pub mod prometheus;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Running;

/// Binds the admin listener.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    // Inherited from systemd or a binary upgrade (crate::upgrade).
    if let Some(l) = crate::upgrade::take(addr).pop() {
        let listener = TcpListener::from_std(l)?;
        tracing::info!(address = %addr, "admin listening (inherited socket)");
        return Ok(listener);
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind admin listener on {addr}: {e}"),
        )
    })?;
    tracing::info!(address = %listener.local_addr()?, "admin listening");
    Ok(listener)
}

/// Serves the admin API until `shutdown` turns true.
pub async fn serve(listener: TcpListener, running: Running, mut shutdown: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        if !addr.ip().is_loopback() && running.snapshot().admin_token.is_none() {
            tracing::warn!(address = %addr, "the admin listener is not on a loopback address and has no admin.token: anyone who can reach it can reload and drain");
        }
    }
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let running = running.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let running = running.clone();
                async move { Ok::<_, Infallible>(handle(&running, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    reply(status, "text/plain; charset=utf-8", body)
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

/// Answers one admin request.
pub async fn handle(running: &Running, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let token = running.snapshot().admin_token.clone();
    if let Err(refused) = auth::check(req.method(), req.uri(), req.headers(), token.as_deref()) {
        tracing::info!(method = %req.method(), path = %req.uri().path(), status = refused.status.as_u16(), "admin request refused: {}", refused.message);
        let mut r = text(refused.status, refused.message);
        if refused.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        return r;
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["metrics"] => match method {
            Method::GET | Method::HEAD => reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                prometheus::render(running),
            ),
            _ => not_allowed("GET, HEAD"),
        },
        ["status"] => match method {
            Method::GET | Method::HEAD => reply(
                StatusCode::OK,
                "application/json",
                format!("{:#}\n", status(running)),
            ),
            _ => not_allowed("GET, HEAD"),
        },
        ["healthz"] => match method {
            Method::GET | Method::HEAD => text(StatusCode::OK, "ok"),
            _ => not_allowed("GET, HEAD"),
        },
        ["reload"] => match method {
            Method::POST => match running.reload().await {
                Ok(()) => text(StatusCode::OK, "reloaded"),
                Err(e) => text(
                    StatusCode::BAD_REQUEST,
                    format!("reload failed; the running config stays:\n{e}"),
                ),
            },
            _ => not_allowed("POST"),
        },
        ["cache", "purge"] => match method {
            Method::POST => purge(running, req.uri().query()),
            _ => not_allowed("POST"),
        },
        ["groups", group, "servers", id, action @ ("drain" | "enable")] => {
            if method != Method::POST {
                return not_allowed("POST");
            }
            let snapshot = running.snapshot();
            let Some(server) = snapshot
                .group(group)
                .and_then(|g| g.servers.iter().find(|s| &*s.id == *id))
            else {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("no server {id:?} in group {group:?}"),
                );
            };
            let drain = *action == "drain";
            let was = server.state.set_drained(drain);
            if was != drain {
                tracing::info!(group = %group, server = %id, "server {} by the admin API", if drain { "drained" } else { "enabled" });
            }
            text(
                StatusCode::OK,
                format!(
                    "{group}/{id}: {}",
                    if drain { "drained" } else { "enabled" }
                ),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

/// `POST /cache/purge`: removes every stored response, or with
/// `?prefix=/static` those whose path (and query) starts with the
/// percent-decoded prefix. Answers `200` with the count.
fn purge(running: &Running, query: Option<&str>) -> Response<Full<Bytes>> {
    let mut prefix = String::new();
    for pair in query.unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("prefix=") {
            match percent_decode(v) {
                Some(p) => prefix = p,
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "prefix is not valid percent-encoded UTF-8",
                    )
                }
            }
        }
    }
    let Some(cache) = running.registry().cache.current() else {
        return text(StatusCode::OK, "purged 0 entries (no route caches)");
    };
    let n = cache.purge(&prefix);
    tracing::info!(prefix = %prefix, entries = n, "cache purged by the admin API");
    text(StatusCode::OK, format!("purged {n} entries"))
}

/// Decodes `%XX` escapes (and `+` as a space, as in a form) of a query value.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `/status` document.
pub fn status(running: &Running) -> serde_json::Value {
    let snapshot = running.snapshot();
    let groups: Vec<_> = snapshot
        .groups
        .iter()
        .map(|g| {
            let now = crate::clock::now_ms();
            let servers: Vec<_> = g
                .server_loads()
                .enumerate()
                .map(|(i, (s, in_flight, ewma))| {
                    let mut v = json!({
                        "id": &*s.id,
                        "address": s.address.as_str(),
                        "weight": s.weight,
                        "healthy": s.state.is_healthy(),
                        "ejected": s.state.passive.is_ejected_at(now),
                        "consecutive_failures": s.state.passive.failures(),
                        "drained": s.state.is_drained(),
                        "usable": g.servers.iter().position(|x| x.id == s.id).is_some_and(|i| g.is_usable(i)),
                        "in_flight": in_flight,
                        "requests": s.state.requests(),
                        "response_time_ewma_ms": ewma.map(|d| d.as_secs_f64() * 1000.0),
                    });
                    if let (Some(v), serde_json::Value::Object(e)) = (v.as_object_mut(), edge_metrics::server_status(g, i)) {
                        v.extend(e);
                    }
                    v
                })
                .collect();
            json!({
                "name": &*g.name,
                "algorithm": g.algorithm.name(),
                "retries": g.retries,
                "queue": edge_metrics::group_status(g),
                "servers": servers,
            })
        })
        .collect();
    let routes: Vec<_> = snapshot
        .routes
        .routes()
        .iter()
        .map(|r| json!({ "name": &*r.name, "group": snapshot.groups.get(r.group).map(|g| &*g.name) }))
        .collect();
    let listeners: Vec<_> = running
        .local_addrs()
        .iter()
        .map(|(n, a)| json!({ "name": &**n, "address": a.to_string() }))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listeners": listeners,
        "routes": routes,
        "groups": groups,
    })
}
