//! A read-side watcher of an HTTP/2 connection's frames (RFC 9113 §4.1), so
//! the watchdog can tell requests from control traffic without decoding
//! anything: it reads the 9-byte frame headers as they pass and skips payloads.
//!
//! - HEADERS, CONTINUATION and DATA frames are stream activity; PING,
//!   SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM and GOAWAY are not: a
//!   client that only pings is idle, and is closed at `idle_timeout`.
//! - A header block (a HEADERS frame until the frame with END_HEADERS) must
//!   arrive within `request_header_timeout`, as an HTTP/1 request head must:
//!   a slow HEADERS/CONTINUATION trickle is closed like slowloris.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::activity::{ConnActivity, Seen};

/// Length of the client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
/// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
/// The END_HEADERS flag of HEADERS and CONTINUATION.
const END_HEADERS: u8 = 0x4;

/// Frame-boundary state of the bytes read so far.
#[derive(Debug)]
pub(super) struct FrameParser {
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: u32,
    kind: u8,
    flags: u8,
}

impl FrameParser {
    pub(super) fn new() -> Self {
        FrameParser {
            preface_left: PREFACE_LEN,
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            kind: 0,
            flags: 0,
        }
    }

    /// Feeds the next bytes of the connection.
    pub(super) fn feed(&mut self, mut b: &[u8]) -> Seen {
        let mut seen = Seen::default();
        while !b.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(b.len());
                self.preface_left -= n;
                b = &b[n..];
                continue;
            }
            if self.payload_left > 0 {
                let n = (self.payload_left as usize).min(b.len());
                self.payload_left -= n as u32;
                b = &b[n..];
                if self.payload_left == 0 {
                    self.frame_done(&mut seen);
                }
                continue;
            }
            let n = (9 - self.header_len).min(b.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&b[..n]);
            self.header_len += n;
            b = &b[n..];
            if self.header_len == 9 {
                self.header_len = 0;
                let h = self.header;
                self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                self.kind = h[3];
                self.flags = h[4];
                if matches!(self.kind, DATA | HEADERS | CONTINUATION) {
                    seen.stream_frames += 1;
                }
                if self.kind == HEADERS {
                    seen.block_started = true;
                    seen.block_ended = false;
                }
                if self.payload_left == 0 {
                    self.frame_done(&mut seen);
                }
            }
        }
        seen
    }

    fn frame_done(&mut self, seen: &mut Seen) {
        if matches!(self.kind, HEADERS | CONTINUATION) && self.flags & END_HEADERS != 0 {
            seen.block_ended = true;
        }
    }
}

/// The I/O of an HTTP/2 connection, reporting frames to its [`ConnActivity`].
pub(super) struct FrameWatch<I> {
    inner: I,
    parser: FrameParser,
    activity: Arc<ConnActivity>,
}

impl<I> FrameWatch<I> {
    pub(super) fn new(inner: I, activity: Arc<ConnActivity>) -> Self {
        FrameWatch {
            inner,
            parser: FrameParser::new(),
            activity,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FrameWatch<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let this = &mut *self;
            let seen = this.parser.feed(&buf.filled()[before..]);
            this.activity.h2_frames(&seen);
        }
        res
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FrameWatch<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend(std::iter::repeat_n(0u8, len));
        f
    }

    #[test]
    fn control_frames_are_not_stream_activity() {
        let mut p = FrameParser::new();
        let mut bytes = vec![0u8; 24];
        bytes.extend(frame(0x4, 0, 6)); // SETTINGS
        bytes.extend(frame(0x6, 0, 8)); // PING
        bytes.extend(frame(0x8, 0, 4)); // WINDOW_UPDATE
        assert_eq!(p.feed(&bytes), Seen::default());
    }

    #[test]
    fn header_blocks_byte_by_byte() {
        let mut p = FrameParser::new();
        assert_eq!(p.feed(&[0u8; 24]), Seen::default());
        let mut bytes = frame(HEADERS, 0, 10);
        bytes.extend(frame(CONTINUATION, END_HEADERS, 3));
        let mut started = false;
        let mut ended_at = None;
        for (i, b) in bytes.iter().enumerate() {
            let s = p.feed(std::slice::from_ref(b));
            started |= s.block_started;
            if s.block_ended {
                ended_at = Some(i);
            }
        }
        assert!(started);
        assert_eq!(ended_at, Some(bytes.len() - 1));
        let s = p.feed(&frame(DATA, 1, 5));
        assert_eq!(s.stream_frames, 1);
        assert!(!s.block_started && !s.block_ended);
    }
}
