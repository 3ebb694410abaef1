//! Probes over HTTP/2: `type: grpc` (the standard gRPC health protocol,
//! `grpc.health.v1.Health/Check`, as Envoy's `grpc_health_check` and
//! Kubernetes' gRPC probes call it) and `type: http` probes of `http2` groups.
//!
//! The probe message is encoded by hand (one optional string field), so no
//! protobuf code generation is needed: `HealthCheckRequest { string service
//! = 1; }` → `HealthCheckResponse { ServingStatus status = 1; }`, passing on
//! `SERVING` (1) with `grpc-status: 0`.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE, USER_AGENT};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::error::Chain;
use crate::health::GrpcProbe;
use crate::upstream::tls::UpstreamStream;

/// Largest probe response body read, in bytes.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// Sends `req` on a new HTTP/2 connection over `stream` and returns the
/// response head and body. The connection closes when the response is dropped.
///
/// # Errors
/// A short reason (handshake or request failure).
pub(super) async fn h2_send(
    stream: UpstreamStream,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, String> {
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {}", Chain(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {}", Chain(&e)))
}

/// The protobuf encoding of `HealthCheckRequest { service }` in one gRPC
/// length-prefixed message (uncompressed).
fn request_message(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + msg.len());
    framed.put_u8(0);
    framed.put_u32(msg.len() as u32);
    framed.put_slice(&msg);
    framed.freeze()
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The `status` field of a `HealthCheckResponse` (0 when absent, proto3's
/// default); unknown fields are skipped.
fn serving_status(mut msg: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !msg.is_empty() {
        let (tag, n) = read_varint(msg)?;
        msg = &msg[n..];
        match (tag >> 3, tag & 7) {
            (1, 0) => {
                let (v, n) = read_varint(msg)?;
                status = v;
                msg = &msg[n..];
            }
            (_, 0) => msg = &msg[read_varint(msg)?.1..],
            (_, 1) => msg = msg.get(8..)?,
            (_, 5) => msg = msg.get(4..)?,
            (_, 2) => {
                let (len, n) = read_varint(msg)?;
                msg = msg.get(n + usize::try_from(len).ok()?..)?;
            }
            _ => return None,
        }
    }
    Some(status)
}

fn status_name(s: u64) -> &'static str {
    match s {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "unrecognized",
    }
}

/// Calls `grpc.health.v1.Health/Check` on `stream` (a fresh connection to
/// the server, TLS when the group has it) for `authority`.
///
/// # Errors
/// Why the probe failed: transport, HTTP status, `grpc-status`, or a
/// serving status other than `SERVING`.
pub(super) async fn probe(
    stream: UpstreamStream,
    scheme: &str,
    authority: &str,
    grpc: &GrpcProbe,
) -> Result<String, String> {
    let req = Request::post(format!(
        "{scheme}://{authority}/grpc.health.v1.Health/Check"
    ))
    .header(CONTENT_TYPE, HeaderValue::from_static("application/grpc"))
    .header(TE, HeaderValue::from_static("trailers"))
    .header(USER_AGENT, HeaderValue::from_static("weir-health-check"))
    .body(Full::new(request_message(&grpc.service)))
    .map_err(|e| format!("request: {e}"))?;
    let resp = h2_send(stream, req).await?;
    if resp.status() != StatusCode::OK {
        return Err(format!("HTTP status {}", resp.status().as_u16()));
    }
    let (parts, body) = resp.into_parts();
    let collected = Limited::new(body, MAX_PROBE_BODY)
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let grpc_status = field("grpc-status").ok_or("no grpc-status in the response")?;
    if grpc_status != "0" {
        let message = field("grpc-message").unwrap_or_default();
        return Err(format!("grpc-status {grpc_status} {message}")
            .trim_end()
            .to_string());
    }
    let body = collected.to_bytes();
    if body.len() < 5 || body[0] != 0 {
        return Err("malformed HealthCheckResponse message".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body
        .get(5..5 + len)
        .ok_or("truncated HealthCheckResponse message")?;
    let status = serving_status(msg).ok_or("malformed HealthCheckResponse message")?;
    if status == 1 {
        Ok("SERVING".into())
    } else {
        Err(format!("status {}", status_name(status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        assert_eq!(&request_message("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request_message("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
    }

    #[test]
    fn response_decoding() {
        assert_eq!(serving_status(&[0x08, 0x01]), Some(1));
        assert_eq!(serving_status(&[]), Some(0));
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(serving_status(&[0x12, 0x01, 0xff, 0x08, 0x02]), Some(2));
        assert_eq!(serving_status(&[0x08]), None);
        assert_eq!(serving_status(&[0x12, 0x05, 0x00]), None);
    }
}
