//! The streaming encoder body: each upstream frame is compressed into a
//! small buffer handed on as one frame, and the encoder is flushed whenever
//! the upstream has nothing more to give for now.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;

use super::{Encoding, Levels, WINDOW_LOG};

/// An encoder writing into an in-memory buffer.
#[derive(Debug)]
enum Encoder {
    Zstd(ZstdEncoder<Vec<u8>>),
    /// Boxed: brotli's state is 5.6 KiB inline.
    Br(Box<BrotliEncoder<Vec<u8>>>),
    Gzip(GzipEncoder<Vec<u8>>),
}

impl Encoder {
    fn new(enc: Encoding, levels: Levels) -> Self {
        let out = Vec::new();
        match enc {
            Encoding::Zstd => Encoder::Zstd(ZstdEncoder::with_quality_and_params(
                out,
                Level::Precise(levels.zstd),
                &[async_compression::zstd::CParameter::window_log(WINDOW_LOG)],
            )),
            Encoding::Br => Encoder::Br(Box::new(BrotliEncoder::with_params(
                out,
                async_compression::brotli::EncoderParams::default()
                    .quality(Level::Precise(i32::try_from(levels.br).unwrap_or(4)))
                    .window_size(WINDOW_LOG as i32),
            ))),
            Encoding::Gzip => Encoder::Gzip(GzipEncoder::with_quality(
                out,
                Level::Precise(i32::try_from(levels.gzip).unwrap_or(6)),
            )),
        }
    }

    fn writer(&mut self) -> Pin<&mut (dyn AsyncWrite + Unpin + Send)> {
        match self {
            Encoder::Zstd(e) => Pin::new(e),
            Encoder::Br(e) => Pin::new(&mut **e),
            Encoder::Gzip(e) => Pin::new(e),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Zstd(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Gzip(e) => e.get_mut(),
        }
    }

    /// Compresses all of `data` (the sink is memory: never pending).
    fn write(&mut self, cx: &mut Context<'_>, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.writer().poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => data = &data[n..],
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
        Ok(())
    }

    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.writer().poll_flush(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn finish(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.writer().poll_shutdown(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// The compressed bytes produced so far, taken out of the buffer.
    fn take(&mut self) -> Option<Bytes> {
        let out = self.output();
        (!out.is_empty()).then(|| Bytes::from(std::mem::take(out)))
    }
}

/// A response body compressed as it streams: wraps the original body `B`
/// (the proxy's `ProxyBody`).
#[derive(Debug)]
pub struct Compressed<B> {
    inner: B,
    encoder: Encoder,
    /// Data was written since the last flush.
    dirty: bool,
    /// The encoder was finished; what is left is `trailers`, then the end.
    finished: bool,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl<B: Body<Data = Bytes> + Unpin> Compressed<B> {
    /// Compresses `inner` with `enc` at `levels`.
    pub fn new(inner: B, enc: Encoding, levels: Levels) -> Self {
        Compressed {
            inner,
            encoder: Encoder::new(enc, levels),
            dirty: false,
            finished: false,
            trailers: None,
            done: false,
        }
    }

    /// Ends the compressed stream early after an encoder failure (which an
    /// in-memory sink should never see): the client's decoder sees the
    /// stream cut short.
    fn fail(&mut self, e: &io::Error) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        tracing::warn!(error = %e, "response compression failed: body cut short");
        self.done = true;
        Poll::Ready(None)
    }

    /// Polls the next compressed frame.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self.finished {
                if let Some(out) = self.encoder.take() {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                self.done = true;
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if let Err(e) = self.encoder.write(cx, &data) {
                            return self.fail(&e);
                        }
                        self.dirty = true;
                        if let Some(out) = self.encoder.take() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        if let Err(e) = self.encoder.finish(cx) {
                            return self.fail(&e);
                        }
                        self.finished = true;
                    }
                },
                Poll::Ready(None) => {
                    if let Err(e) = self.encoder.finish(cx) {
                        return self.fail(&e);
                    }
                    self.finished = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => {
                    // Nothing more for now: what was compressed goes out,
                    // so a slow stream is not held back.
                    if self.dirty {
                        self.dirty = false;
                        if let Err(e) = self.encoder.flush(cx) {
                            return self.fail(&e);
                        }
                        if let Some(out) = self.encoder.take() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// True once the compressed stream has ended.
    pub fn is_end_stream(&self) -> bool {
        self.done
    }

    /// Unknown: the compressed length is known only at the end.
    pub fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
