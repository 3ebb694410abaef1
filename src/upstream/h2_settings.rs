//! Reads the server's `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §6.5.2)
//! off an upstream HTTP/2 connection as its bytes are read: a read-side tap
//! that follows frame boundaries (9-byte headers, payloads skipped) and
//! decodes only SETTINGS frames. hyper keeps the value to itself until its
//! dispatcher happens to be polled; the pool needs it before choosing a
//! connection, so that a full connection makes it open another.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Frame type SETTINGS.
const SETTINGS: u8 = 0x4;
/// The ACK flag of SETTINGS.
const ACK: u8 = 0x1;
/// Identifier of SETTINGS_MAX_CONCURRENT_STREAMS.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// What the tap learned, shared with the pool.
#[derive(Debug)]
pub struct PeerSettings {
    /// The server's current stream limit (`usize::MAX` = none announced).
    pub max_streams: AtomicUsize,
    /// True once the server's first SETTINGS frame (its preface) was read.
    seen: AtomicBool,
    notify: Notify,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            max_streams: AtomicUsize::new(usize::MAX),
            seen: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }
}

impl PeerSettings {
    /// Waits until the server's first SETTINGS frame has been read.
    pub async fn wait_first(&self) {
        loop {
            let notified = self.notify.notified();
            if self.seen.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn settings_done(&self) {
        if !self.seen.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }
}

/// Frame-boundary state of the bytes read so far.
#[derive(Debug, Default)]
struct Scan {
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
    in_settings: bool,
    entry: [u8; 6],
    entry_len: usize,
}

impl Scan {
    fn feed(&mut self, mut bytes: &[u8], out: &PeerSettings) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                if self.in_settings {
                    for &b in &bytes[..n] {
                        self.entry[self.entry_len] = b;
                        self.entry_len += 1;
                        if self.entry_len == 6 {
                            self.entry_len = 0;
                            let id = u16::from_be_bytes([self.entry[0], self.entry[1]]);
                            let value = u32::from_be_bytes([
                                self.entry[2],
                                self.entry[3],
                                self.entry[4],
                                self.entry[5],
                            ]);
                            if id == MAX_CONCURRENT_STREAMS {
                                let v = usize::try_from(value).unwrap_or(usize::MAX);
                                out.max_streams.store(v, Ordering::Relaxed);
                            }
                        }
                    }
                }
                self.left -= n;
                bytes = &bytes[n..];
                if self.left == 0 && self.in_settings {
                    self.in_settings = false;
                    out.settings_done();
                }
                continue;
            }
            let n = (9 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
            self.head_len += n;
            bytes = &bytes[n..];
            if self.head_len == 9 {
                self.head_len = 0;
                let len = u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]);
                self.left = len as usize;
                self.in_settings = self.head[3] == SETTINGS && self.head[4] & ACK == 0;
                self.entry_len = 0;
                if self.in_settings && self.left == 0 {
                    self.in_settings = false;
                    out.settings_done();
                }
            }
        }
    }
}

/// An upstream stream whose reads pass through the SETTINGS scan.
#[derive(Debug)]
pub struct SettingsTap<S> {
    inner: S,
    scan: Scan,
    settings: Arc<PeerSettings>,
}

impl<S> SettingsTap<S> {
    /// Wraps `inner`, reporting into `settings`.
    pub fn new(inner: S, settings: Arc<PeerSettings>) -> Self {
        SettingsTap {
            inner,
            scan: Scan::default(),
            settings,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SettingsTap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scan.feed(&buf.filled()[before..], &this.settings);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SettingsTap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn finds_max_concurrent_streams_across_any_split() {
        let mut bytes = frame(SETTINGS, 0, &[0, 4, 0, 1, 0, 0, 0, 3, 0, 0, 0, 7]);
        bytes.extend(frame(0x8, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        bytes.extend(frame(0x0, 0, &[0, 3, 0, 0, 0, 9])); // DATA that looks like a setting
        bytes.extend(frame(SETTINGS, ACK, &[]));
        for chunk in 1..bytes.len() {
            let out = PeerSettings::default();
            let mut scan = Scan::default();
            for part in bytes.chunks(chunk) {
                scan.feed(part, &out);
            }
            assert_eq!(out.max_streams.load(Ordering::Relaxed), 7, "chunk {chunk}");
            assert!(out.seen.load(Ordering::Relaxed));
        }
        // A later SETTINGS lowers it.
        let out = PeerSettings::default();
        let mut scan = Scan::default();
        scan.feed(&frame(SETTINGS, 0, &[]), &out);
        assert!(out.seen.load(Ordering::Relaxed));
        assert_eq!(out.max_streams.load(Ordering::Relaxed), usize::MAX);
        scan.feed(&frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 2]), &out);
        assert_eq!(out.max_streams.load(Ordering::Relaxed), 2);
    }
}
