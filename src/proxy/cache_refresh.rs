//! Background revalidation (`stale-while-revalidate`, RFC 5861 §3) of a
//! [`Refresh`] the cache lookup handed out: the
//! client got the stale response; one task per key asks a server of the
//! route's group with the stored validators and stores what comes back (a
//! 304 refreshes the entry, a new response replaces it).

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::BodyExt;

use super::body::{Pooled, ProxyBody};
use super::headers;
use crate::balancer::PickContext;
use crate::cache::lookup::{Miss, Respond};
use crate::cache::refresh::Refresh;
use crate::upstream::body::UpstreamBody;
use crate::upstream::forward;
use crate::upstream::group::Excluded;
use crate::upstream::ServerGroup;

/// Sends the request of `refresh` (`headers` as rewritten for the upstream,
/// `uri` as received) to a server of `group` in a task on this worker.
pub fn spawn(
    refresh: Refresh,
    group: Arc<ServerGroup>,
    client_ip: IpAddr,
    headers: HeaderMap,
    uri: Uri,
) {
    tokio::spawn(run(refresh.into_miss(), group, client_ip, headers, uri));
}

async fn run(
    miss: Box<Miss>,
    group: Arc<ServerGroup>,
    client_ip: IpAddr,
    mut headers: HeaderMap,
    uri: Uri,
) {
    miss.prepare(&mut headers);
    let ctx = PickContext {
        client_ip,
        uri: &uri,
        headers: &headers,
    };
    let Some(index) = group.pick(&ctx, &Excluded::default()) else {
        return;
    };
    let server = &group.servers[index];
    let mut req = Request::new(UpstreamBody::Empty);
    *req.method_mut() = Method::GET;
    *req.uri_mut() = server.uri(uri.path_and_query());
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    let guard = server.state.start_request();
    let Ok((resp, conn)) = forward::send(&group, server, req).await else {
        tracing::debug!(group = %group.name, server = %server.id, "cache: background revalidation failed");
        return;
    };
    server.state.stats.responses.inc(resp.status().as_u16());
    let (mut parts, body) = resp.into_parts();
    headers::rewrite_response(&mut parts.headers, parts.version);
    let pooled = Pooled {
        conn,
        max_idle: group.pool.max_idle,
    };
    let mut body = ProxyBody::upstream(body, guard, pooled, None);
    if let Respond::Stream(Some(tee)) = miss.respond(&mut parts) {
        body.set_tee(tee);
        // Read it to its end (the tee keeps at most max_object_size),
        // bounded by the group's response timeout.
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(group.timeouts.response, drain).await;
    }
}
