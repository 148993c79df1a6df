//! Connection hygiene: what a client that stops reading, or that is refused before its
//! body was read, does to a connection.
//!
//! * [`StallGuard`] closes a connection whose client has stopped reading its response. A
//!   connection holds one of the server's connection slots, so twelve clients that start
//!   a download and never read it would otherwise lock every other client out for good.
//! * [`finish_unread_body`] handles answers given before the request body was read (a
//!   403 for a bad token, a 413 for a declared size, a 417 for an unknown recipient). The
//!   connection cannot carry another request until that body has been read, so hyper
//!   closes it; a keep-alive client that was not told so sends its next request into a
//!   closed socket and fails (EPIPE), and a client still writing a large body may never
//!   see the answer at all. So the answer says `Connection: close`, and a bounded part of
//!   the body is read and dropped first, letting the client finish writing and read it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Closes the connection when a write has waited `limit` for the client to read.
///
/// The timer runs only while a write is blocked on the socket (the client's receive
/// window is full) and restarts with every byte accepted, so a slow but steady client is
/// never cut off, however long its download takes.
pub struct StallGuard<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Counts the connections closed this way (the listener's own counter).
    on_stall: ::metrics::Counter,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, limit: Duration, on_stall: ::metrics::Counter) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
            on_stall,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn progress<T>(&mut self, ready: io::Result<T>) -> Poll<io::Result<T>> {
        self.stalled = None;
        Poll::Ready(ready)
    }

    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.on_stall.increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading its response",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.progress(r),
            Poll::Pending => this.blocked(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => this.progress(r),
            Poll::Pending => this.blocked(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.progress(r),
            Poll::Pending => this.blocked(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => this.progress(r),
            Poll::Pending => this.blocked(cx),
        }
    }
}

/// The most of an unread request body read and dropped before an early answer: enough
/// for any single-chunk message a client would plausibly send before it sees a refusal.
pub const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// The longest an early answer waits while the rest of the body is drained.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// A request body that hands itself back, through `slot`, when it is dropped unread.
struct Tracked {
    inner: Option<Body>,
    slot: Arc<Mutex<Option<Body>>>,
    /// The body ended (or failed): read to the end, whatever `is_end_stream` says. A
    /// chunked body never says it ended until its last frame has been polled.
    done: bool,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(HttpBody::size_hint)
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take() {
            if !self.done && !body.is_end_stream() {
                if let Ok(mut slot) = self.slot.lock() {
                    *slot = Some(body);
                }
            }
        }
    }
}

/// Middleware: an answer given while the request body is still unread says
/// `Connection: close`, after up to [`DRAIN_MAX_BYTES`] of the body (within
/// [`DRAIN_MAX_TIME`]) have been read and dropped. A client that asked to
/// `Expect: 100-continue` has not sent its body and is not made to.
pub async fn finish_unread_body(request: Request, next: Next) -> Response {
    let waits_for_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let slot = Arc::new(Mutex::new(None));
    let (parts, body) = request.into_parts();
    let tracked = Tracked {
        inner: Some(body),
        slot: slot.clone(),
        done: false,
    };
    let mut response = next
        .run(Request::from_parts(parts, Body::new(tracked)))
        .await;
    let unread = slot.lock().ok().and_then(|mut s| s.take());
    if let Some(body) = unread {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let small_enough = declared.is_none_or(|n| n <= DRAIN_MAX_BYTES);
        if !waits_for_continue && small_enough {
            let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain(body, DRAIN_MAX_BYTES)).await;
        }
    }
    response
}

/// Reads and drops up to `limit` bytes of `body`.
async fn drain(body: Body, limit: u64) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    while let Some(Ok(piece)) = stream.next().await {
        seen += piece.len() as u64;
        if seen >= limit {
            break;
        }
    }
}
