//! What a response holds of its upstream connection until its body ends.

use std::sync::Arc;

use super::h2::H2Lease;
use super::response::ResponseBody;
use super::ServerState;

/// The upstream connection (HTTP/1.1) or stream slot (HTTP/2) a response
/// came on. [`Lease::checkin`] when the body has been read to its end;
/// dropping it (and the body) earlier closes the HTTP/1.1 connection or
/// resets the stream.
#[derive(Debug)]
pub enum Lease {
    /// An HTTP/1.1 keep-alive connection: the response body owns it
    /// ([`super::h1::Body`]) until its end.
    H1,
    /// A stream on a multiplexed HTTP/2 connection.
    H2(H2Lease),
}

impl Lease {
    /// Gives the connection back for the next request once `body` ended:
    /// an HTTP/1.1 connection that can be reused to `state`'s idle pool (at
    /// most `max_idle` kept), an HTTP/2 stream slot to its connection.
    pub fn checkin(self, body: &mut ResponseBody, state: &Arc<ServerState>, max_idle: usize) {
        match self {
            Lease::H1 => {
                if let ResponseBody::H1(b) = body {
                    if let Some((conn, upload)) = b.take_reusable() {
                        super::h1::finish_upload(conn, upload, state, max_idle);
                    }
                }
            }
            Lease::H2(l) => drop(l),
        }
    }
}
