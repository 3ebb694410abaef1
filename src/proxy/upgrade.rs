//! HTTP/1.1 protocol upgrades (WebSocket and others, RFC 9110 §7.8): the
//! `Upgrade` request is forwarded with its `Connection: upgrade`, and when the
//! server answers `101 Switching Protocols` both connections are handed over
//! to a task that copies bytes both ways until either side closes.
//!
//! Only WebSocket (RFC 6455) is tunnelled. Any other `Upgrade` — above all
//! `h2c` with its `HTTP2-Settings` (RFC 9113 §3.1 deprecates it; forwarded,
//! it lets a client speak HTTP/2 straight to the server past routing,
//! headers and logs) — is stripped as the hop-by-hop field it is, and the
//! request is answered normally. A `101` is relayed only for the WebSocket
//! upgrade the client asked for; any other `101` is the server's error (502).
//!
//! The tunnel holds the server's in-flight guard, so a WebSocket counts as one
//! long request for least-connections balancing. Extended CONNECT over HTTP/2
//! (RFC 8441) is not supported yet.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::upstream::{InFlightGuard, ResponseBody, UpstreamResponse};

/// An upgrade the client asked for: the protocol and the hook hyper resolves
/// once the client's connection is handed over.
#[derive(Debug)]
pub struct Requested {
    protocol: HeaderValue,
    downstream: OnUpgrade,
}

/// When `req` asks for an upgrade (HTTP/1.1, `Connection: upgrade` and an
/// `Upgrade` field), takes hyper's upgrade hook from it.
pub fn requested<B>(req: &mut Request<B>) -> Option<Requested> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let protocol = req.headers().get(header::UPGRADE)?.clone();
    if !has_token(req.headers(), "upgrade") {
        return None;
    }
    if !is_websocket(&protocol) {
        tracing::debug!(upgrade = ?protocol, "upgrade not forwarded (only websocket is tunnelled)");
        return None;
    }
    Some(Requested {
        protocol,
        downstream: hyper::upgrade::on(req),
    })
}

/// True when an `Upgrade` value is exactly the WebSocket protocol.
fn is_websocket(v: &HeaderValue) -> bool {
    v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket")
}

/// True when the `Connection` field lists `token`.
fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Requested {
    /// True when a `101` with `headers` switches to the protocol asked for
    /// (its `Upgrade`, when present, must be WebSocket).
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        headers.get(header::UPGRADE).is_none_or(is_websocket)
    }

    /// Puts the upgrade fields back on the upstream request (the hop-by-hop
    /// cleanup removed them).
    pub fn restore_request_headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// When the server switched protocols, spawns the tunnel (tracked by
    /// `tracker`, so a graceful shutdown waits for it) and returns the `101`
    /// for the client; otherwise gives the response back untouched.
    // The response comes back by value (only for upgrade requests the
    // server did not switch).
    #[allow(clippy::result_large_err)]
    pub fn complete<D>(
        self,
        upstream: UpstreamResponse,
        guard: InFlightGuard,
        tracker: &tokio_util::task::TaskTracker,
        make_body: impl FnOnce() -> D,
    ) -> Result<Response<D>, (UpstreamResponse, InFlightGuard)> {
        if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err((upstream, guard));
        }
        let protocol = upstream
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(self.protocol);
        let (mut parts, body) = upstream.into_parts();
        // Only weir's HTTP/1.1 client gives a 101 (HTTP/2 has none).
        let Some((upstream_io, early)) = (match body {
            ResponseBody::H1(b) => b.into_upgraded(),
            ResponseBody::H2(_) => None,
        }) else {
            return Err((
                Response::from_parts(parts, ResponseBody::H1(crate::upstream::h1::Body::closed())),
                guard,
            ));
        };
        let downstream_io = self.downstream;
        tracker.spawn(async move {
            let _guard = guard;
            match downstream_io.await {
                Ok(down) => {
                    let mut down = TokioIo::new(down);
                    let mut up = upstream_io;
                    // What the server sent right after its 101 goes first.
                    if !early.is_empty() {
                        if let Err(e) = down.write_all(&early).await {
                            tracing::debug!(error = %e, "upgraded connection ended with an error");
                            return;
                        }
                    }
                    match tokio::io::copy_bidirectional(&mut down, &mut up).await {
                        Ok((to_up, to_down)) => {
                            tracing::debug!(
                                to_upstream = to_up,
                                to_downstream = to_down + early.len() as u64,
                                "upgraded connection closed"
                            );
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "upgraded connection ended with an error")
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "protocol upgrade failed"),
            }
        });
        super::headers::remove_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
        Ok(Response::from_parts(parts, make_body()))
    }
}
