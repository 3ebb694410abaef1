//! What a response holds of its upstream connection until its body ends.

use super::h2::H2Lease;
use super::pool::Checkout;
use super::ServerState;

/// The upstream connection (HTTP/1.1) or stream slot (HTTP/2) a response
/// came on. [`Lease::checkin`] when the body has been read to its end;
/// dropping it earlier closes the HTTP/1.1 connection or resets the stream.
#[derive(Debug)]
pub enum Lease {
    /// A pooled HTTP/1.1 keep-alive connection.
    H1(Checkout),
    /// A stream on a multiplexed HTTP/2 connection.
    H2(H2Lease),
}

impl Lease {
    /// Gives the connection back for the next request: an HTTP/1.1
    /// connection to `state`'s idle pool (at most `max_idle` kept), an
    /// HTTP/2 stream slot to its connection.
    pub fn checkin(self, state: &ServerState, max_idle: usize) {
        match self {
            Lease::H1(c) => c.checkin(state, max_idle),
            Lease::H2(l) => drop(l),
        }
    }
}
