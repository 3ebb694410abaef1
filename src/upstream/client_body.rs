//! Faults of the client while its request body streams to a server: a
//! malformed body (bad chunk framing, RFC 9112 §7.1), a body that stalls
//! longer than `client_body_timeout`, a client that goes away mid-body.
//!
//! The body wrapper ([`super::body::UpstreamBody`]) records which one
//! happened in its [`super::body::BodySlot`]; when the upstream request then
//! fails, the service asks the slot first: a client fault is answered 400,
//! 408 or not at all, and never counts against the server (passive ejection,
//! peak EWMA, error counters).

use std::sync::atomic::{AtomicU8, Ordering};

/// What the client did wrong while its body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The body's framing was invalid (a chunk size that is not hex or
    /// overflows, a missing CRLF) → 400.
    Malformed,
    /// No bytes of the body for `client_body_timeout` (or the body was still
    /// arriving when the response timeout ran out) → 408.
    Stalled,
    /// The client closed or reset the connection mid-body → no answer (logged 499).
    Gone,
}

/// The fault recorded on a body slot (0 = none).
#[derive(Debug, Default)]
pub(super) struct FaultCell(AtomicU8);

impl FaultCell {
    pub(super) fn set(&self, fault: ClientFault) {
        let v = match fault {
            ClientFault::Malformed => 1,
            ClientFault::Stalled => 2,
            ClientFault::Gone => 3,
        };
        let _ = self
            .0
            .compare_exchange(0, v, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> Option<ClientFault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(ClientFault::Malformed),
            2 => Some(ClientFault::Stalled),
            3 => Some(ClientFault::Gone),
            _ => None,
        }
    }
}

/// The error an upstream request body ends with when the client sent nothing
/// for `client_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("client sent no body bytes for {0:?} (client_body_timeout)")]
pub struct BodyTimeout(pub std::time::Duration);

/// Which fault a downstream body error is: the client closing or resetting
/// the connection (hyper's incomplete message, an I/O reset, an HTTP/2
/// stream reset) is [`ClientFault::Gone`]; anything else (parse errors of the
/// chunked framing) is [`ClientFault::Malformed`].
pub fn classify(e: &hyper::Error) -> ClientFault {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ClientFault::Gone;
    }
    for err in crate::error::chain(e) {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            ) {
                return ClientFault::Gone;
            }
        }
    }
    // An HTTP/2 stream the client reset (hyper reports it as a body error
    // carrying the h2 reason) is the client leaving.
    let text = e.to_string();
    if text.contains("stream error") || text.contains("CANCEL") {
        return ClientFault::Gone;
    }
    ClientFault::Malformed
}
