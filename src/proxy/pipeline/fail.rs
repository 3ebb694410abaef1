//! The one place an error of the request path becomes what the client, the
//! metrics and the log see (pingora's `fail_to_proxy`, linkerd's error
//! rescue): the status and short body of [`error_response`], the route's
//! counters (once the request has a route and group), the listener's
//! rejection counter, and the log line of the kinds that have one.
//!
//! The failures of single upstream attempts (server counters, passive
//! health, the `upstream request failed` line) are counted where they
//! happen, in [`super::attempt`]: a retried attempt is not the answer.

use http::header::{self, HeaderValue};
use http::{Response, Version};

use super::Scope;
use crate::error::{ErrorKind, ProxyError, Reason};
use crate::proxy::access_log::AccessRecord;
use crate::proxy::body::ProxyBody;
use crate::proxy::service::{error_response, Downstream};
use crate::upstream::queue::Refused;

/// Answers a request that failed with `err`. `scope` is the request's route
/// and group when it got that far (its answer is counted there); `version`
/// is the request's HTTP version.
pub(in crate::proxy) fn fail(
    conn: &Downstream,
    scope: Option<&Scope<'_>>,
    version: Version,
    err: ProxyError,
    record: Option<Box<AccessRecord>>,
) -> Response<ProxyBody> {
    let kind = err.kind;
    if let Some(s) = scope {
        s.observe(kind.logged_status().as_u16());
    }
    log(conn, scope, &err);
    let mut resp = error_response(kind.status(), record);
    match kind {
        ErrorKind::Rejected(reason) => rejected(conn, version, reason, &mut resp),
        ErrorKind::Unauthorized => {
            // RFC 6750 §3: the bearer token failed verification and no route matched.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        ErrorKind::Limited(_) => resp.headers_mut().extend(err.headers),
        ErrorKind::ClientGone => resp.body_mut().set_status(kind.logged_status()),
        _ => {}
    }
    resp
}

/// The log line of an error, for the kinds that have one.
fn log(conn: &Downstream, scope: Option<&Scope<'_>>, err: &ProxyError) {
    let route = scope.map_or("", |s| &s.route.name);
    match err.kind {
        ErrorKind::Rejected(reason) => {
            tracing::debug!(listener = %conn.listener, client = %conn.peer, reason = reason.as_str(), "request rejected");
        }
        ErrorKind::Rewrite => {
            if let Some(cause) = &err.cause {
                tracing::warn!(route = %route, cause = %cause, "rewrite failed: answering 500");
            }
        }
        ErrorKind::QueueFull | ErrorKind::QueueTimeout => {
            let reason = if err.kind == ErrorKind::QueueFull {
                Refused::QueueFull
            } else {
                Refused::Timeout
            };
            let group = scope.map_or("", |s| &s.group.name);
            tracing::warn!(route = %route, group = %group, reason = ?reason, "group queue refused the request: answering 503");
        }
        ErrorKind::ClientGone => {
            tracing::debug!(route = %route, client = %conn.peer, "client closed the connection mid-body");
        }
        _ => {}
    }
}

/// A request weir refuses itself: counted in
/// `weir_downstream_rejected_total{listener,reason}`. An HTTP/1 connection
/// is closed after it (`Connection: close`, as nginx does after a 400): what
/// follows a request weir could not trust may be framed in a way the next
/// hop reads otherwise.
fn rejected(conn: &Downstream, version: Version, reason: Reason, resp: &mut Response<ProxyBody>) {
    conn.stats.rejected.inc(reason);
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if reason == Reason::Trace || reason == Reason::Connect {
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn client_gone_is_logged_as_499() {
        assert_eq!(ErrorKind::ClientGone.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorKind::ClientGone.logged_status().as_u16(), 499);
    }
}
