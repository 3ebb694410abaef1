//! The answer to the client: a server's response (through the cache's tee,
//! a protocol-upgrade tunnel, or a cached copy the server's 304 refreshed),
//! or a response from the cache, each with the per-client headers (rate
//! limit fields, the sticky cookie, the route's response header rules, the
//! response coding).

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Response, Version};

use super::attempt::Served;
use super::prepare::{Admitted, Outgoing};
use super::Scope;
use crate::cache::lookup::Respond;
use crate::content::{Encoding, RouteContent};
use crate::proxy::access_log::AccessRecord;
use crate::proxy::body::{Pooled, ProxyBody};
use crate::proxy::service::Downstream;
use crate::proxy::{headers, protection};
use crate::upstream::health;

/// The response of the server that answered, counted on it and on the route.
pub(in crate::proxy) fn upstream(
    conn: &Downstream,
    scope: &Scope<'_>,
    served: Served,
    out: Outgoing<'_>,
    admitted: Admitted<'_>,
    mut record: Option<Box<AccessRecord>>,
) -> Response<ProxyBody> {
    let Served {
        response: resp,
        lease,
        index,
        guard,
    } = served;
    let group = scope.group;
    let server = &group.servers[index];
    let status = resp.status().as_u16();
    server.state.stats.responses.inc(status);
    scope.observe(status);
    health::passive::response(group, index, resp.status());
    if let Some(r) = &mut record {
        r.server = Some(server.id.clone());
        r.status = status;
    }
    let (resp, guard) = match out.upgrade {
        // The connection becomes the tunnel; it never returns to the pool.
        Some(u) => match u.complete(resp, guard, &conn.tracker, ProxyBody::empty) {
            Ok(switched) => return switched,
            Err(back) => back,
        },
        None => (resp, guard),
    };
    let (mut rparts, rbody) = resp.into_parts();
    headers::rewrite_response(&mut rparts.headers, rparts.version);
    let pooled = Pooled {
        conn: lease,
        max_idle: group.pool.max_idle,
    };
    // The cache stores the response as received, before the per-client
    // headers below.
    let decision = admitted.cached.map(|m| m.respond(&mut rparts));
    note_cache(&mut record, &rparts.headers);
    let body = match decision {
        Some(Respond::Cached(answer)) => {
            drop(ProxyBody::upstream(rbody, guard, pooled, None));
            let (p, bytes) = answer.into_parts();
            rparts = p;
            note_cache(&mut record, &rparts.headers);
            let mut body = ProxyBody::full(bytes, record);
            body.set_status(rparts.status);
            body
        }
        tee => {
            let mut body = ProxyBody::upstream(rbody, guard, pooled, record);
            if let Some(Respond::Stream(Some(tee))) = tee {
                body.set_tee(tee);
            }
            body
        }
    };
    if let Some(h) = admitted.rate_headers {
        protection::add_rate_headers(&mut rparts.headers, h);
    }
    if let Some(s) = &out.session {
        s.finish(index, conn.client.proto == "https", &mut rparts.headers);
    }
    let content = scope.content();
    crate::content::response_headers(content, &mut rparts.headers);
    rparts.version = Version::HTTP_11;
    let resp = Response::from_parts(rparts, body);
    let compression = crate::content::compression(content);
    crate::content::compress::apply(resp, admitted.encoding, compression)
}

/// The cache's stale copy, answering for servers that could not
/// (`stale-if-error`), counted on the route.
pub(in crate::proxy) fn stale(
    scope: &Scope<'_>,
    response: Response<Bytes>,
    admitted: Admitted<'_>,
    record: Option<Box<AccessRecord>>,
) -> Response<ProxyBody> {
    scope.observe(response.status().as_u16());
    let (content, encoding) = (scope.content(), admitted.encoding);
    cached(response, admitted.rate_headers, record, content, encoding)
}

/// A response from the cache (a hit, or stale on an error), with the
/// per-client headers added as on a forwarded response.
pub(in crate::proxy) fn cached(
    response: Response<Bytes>,
    rate_headers: Option<(HeaderValue, HeaderValue)>,
    mut record: Option<Box<AccessRecord>>,
    content: Option<&RouteContent>,
    encoding: Option<Encoding>,
) -> Response<ProxyBody> {
    let (mut parts, bytes) = response.into_parts();
    note_cache(&mut record, &parts.headers);
    if let Some(h) = rate_headers {
        protection::add_rate_headers(&mut parts.headers, h);
    }
    crate::content::response_headers(content, &mut parts.headers);
    let mut body = ProxyBody::full(bytes, record);
    body.set_status(parts.status);
    crate::content::compress::apply(
        Response::from_parts(parts, body),
        encoding,
        crate::content::compression(content),
    )
}

/// Marks the access record with the cache's verdict (from `Cache-Status`).
fn note_cache(record: &mut Option<Box<AccessRecord>>, headers: &http::HeaderMap) {
    if let (Some(r), Some(v)) = (record, headers.get(&crate::cache::lookup::CACHE_STATUS)) {
        r.cache = Some(crate::cache::lookup::log_status(v));
    }
}
