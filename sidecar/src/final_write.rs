//! The last bytes of a closing connection leave with its FIN.
//!
//! A client that sends `Connection: close` (or HTTP/1.0 without
//! keep-alive) gets one response, then the sidecar ends the connection:
//! under mTLS that is the response's records, a `close_notify` alert and a
//! FIN. Written as they are produced, those are three segments, and over
//! loopback each costs the sender the receiver's TCP processing and a
//! wake-up. [`FinalWrite`] holds what is written once the connection's
//! final response is complete ([`FinalResponse::set`]) and sends it all in
//! one corked write at shutdown, so response, alert and FIN go as one
//! segment.
//!
//! Held bytes are never lost or late for long: a read, a shutdown, or
//! more than [`HOLD_LIMIT`] bytes sends them, and dropping the stream
//! makes one non-blocking attempt. Until the hint is set every call
//! passes straight through.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The most a [`FinalWrite`] holds back; beyond it, writes go out at once.
pub const HOLD_LIMIT: usize = 64 * 1024;

/// Set once the response after which the connection closes has been
/// produced in full: what the stream is given from then on is its tail.
#[derive(Debug, Default)]
pub struct FinalResponse(AtomicBool);

impl FinalResponse {
    /// A hint not yet set.
    pub fn new() -> Arc<Self> {
        Arc::new(FinalResponse::default())
    }

    /// The connection's final response is complete.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`FinalResponse::set`] was called.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Whether an HTTP/1.x request ends its connection after the response,
/// as the server decides it: `Connection: close`, or HTTP/1.0 without
/// `keep-alive`. HTTP/2 never does.
pub fn closes_connection(version: http::Version, headers: &http::HeaderMap) -> bool {
    // The version first: an HTTP/2 request (every request between
    // sidecars) costs no header lookup.
    let lists = |token: &str| {
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match version {
        http::Version::HTTP_10 => !lists("keep-alive"),
        http::Version::HTTP_11 => lists("close"),
        _ => false,
    }
}

pin_project_lite::pin_project! {
    /// A response body that sets its connection's [`FinalResponse`] once
    /// it has nothing more to give.
    #[derive(Debug)]
    pub struct MarksFinal<B> {
        #[pin]
        inner: B,
        hint: Arc<FinalResponse>,
    }
}

impl<B> MarksFinal<B> {
    /// `inner`, setting `hint` at its end.
    pub fn new(inner: B, hint: Arc<FinalResponse>) -> Self {
        MarksFinal { inner, hint }
    }
}

impl<B: Body<Data = Bytes>> Body for MarksFinal<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.hint.set();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // The server asks after each frame; a body of known length is
        // not polled again once its last byte is out.
        let end = self.inner.is_end_stream();
        if end {
            self.hint.set();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP stream that holds the tail of a closing connection until its
/// shutdown (see the module documentation).
#[derive(Debug)]
pub struct FinalWrite {
    inner: TcpStream,
    hint: Arc<FinalResponse>,
    held: Vec<u8>,
    sent: usize,
    corked: bool,
}

impl FinalWrite {
    /// `inner`, holding its tail once `hint` is set.
    pub fn new(inner: TcpStream, hint: Arc<FinalResponse>) -> Self {
        FinalWrite {
            inner,
            hint,
            held: Vec::new(),
            sent: 0,
            corked: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// Whether `more` bytes may join the held ones.
    fn holds(&self, more: usize) -> bool {
        self.hint.is_set() && self.held.len() - self.sent + more <= HOLD_LIMIT
    }

    /// Writes out everything held.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for FinalWrite {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Whoever reads expects the peer to have what was written.
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FinalWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holds(buf.len()) {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|b| b.len()).sum();
        if this.holds(total) {
            for b in bufs {
                this.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Held bytes wait for the shutdown that follows the final response.
        if !this.holds(0) {
            ready!(this.poll_release(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.sent < this.held.len() && !this.corked {
            // Corked, the held bytes stay queued until the shutdown's FIN
            // joins them; a failure only costs the extra segment.
            let _ = socket2::SockRef::from(&this.inner).set_tcp_cork(true);
            this.corked = true;
        }
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Drop for FinalWrite {
    fn drop(&mut self) {
        // Dropped without a shutdown (an error path): one attempt, never a
        // wait.
        while self.sent < self.held.len() {
            match self.inner.try_write(&self.held[self.sent..]) {
                Ok(n) if n > 0 => self.sent += n,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (FinalWrite, Arc<FinalResponse>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let hint = FinalResponse::new();
        let ours = FinalWrite::new(accepted.unwrap().0, hint.clone());
        (ours, hint, client.unwrap())
    }

    /// Whether the peer can read anything within a short wait.
    async fn readable_soon(peer: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), peer.read(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn without_the_hint_writes_go_out_at_once() {
        let (mut ours, _hint, mut peer) = pair().await;
        ours.write_all(b"early").await.unwrap();
        ours.flush().await.unwrap();
        assert_eq!(
            readable_soon(&mut peer).await.as_deref(),
            Some(&b"early"[..])
        );
        assert!(ours.held.is_empty());
    }

    #[tokio::test]
    async fn the_tail_waits_for_shutdown_and_arrives_whole_before_eof() {
        let (mut ours, hint, mut peer) = pair().await;
        ours.write_all(b"head ").await.unwrap();
        hint.set();
        ours.write_all(b"response ").await.unwrap();
        ours.write_all(b"alert").await.unwrap();
        ours.flush().await.unwrap();
        assert_eq!(
            readable_soon(&mut peer).await.as_deref(),
            Some(&b"head "[..])
        );
        assert_eq!(
            readable_soon(&mut peer).await,
            None,
            "the tail left before shutdown"
        );
        ours.shutdown().await.unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"response alert");
    }

    #[tokio::test]
    async fn a_read_sends_what_is_held_first() {
        let (mut ours, hint, mut peer) = pair().await;
        hint.set();
        ours.write_all(b"answer").await.unwrap();
        ours.flush().await.unwrap();
        let mut buf = [0u8; 8];
        let (read, got) = tokio::join!(ours.read(&mut buf), async {
            let got = readable_soon(&mut peer).await;
            peer.write_all(b"next").await.unwrap();
            got
        });
        assert_eq!(got.as_deref(), Some(&b"answer"[..]));
        assert_eq!(&buf[..read.unwrap()], b"next");
    }

    #[tokio::test]
    async fn vectored_writes_are_held_in_order() {
        let (mut ours, hint, mut peer) = pair().await;
        hint.set();
        let parts = [io::IoSlice::new(b"one "), io::IoSlice::new(b"two")];
        let n = ours.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 7);
        ours.shutdown().await.unwrap();
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"one two");
    }

    #[tokio::test]
    async fn more_than_the_limit_is_not_held() {
        let (mut ours, hint, mut peer) = pair().await;
        hint.set();
        let big = vec![7u8; HOLD_LIMIT];
        ours.write_all(&big).await.unwrap();
        assert_eq!(ours.held.len(), HOLD_LIMIT);
        let (wrote, got) = tokio::join!(ours.write_all(b"x"), async {
            let mut all = vec![0u8; HOLD_LIMIT + 1];
            peer.read_exact(&mut all).await.map(|_| all)
        });
        wrote.unwrap();
        let all = got.unwrap();
        assert!(all[..HOLD_LIMIT].iter().all(|b| *b == 7));
        assert_eq!(all[HOLD_LIMIT], b'x');
        assert!(ours.held.is_empty());
    }

    #[tokio::test]
    async fn dropping_the_stream_still_sends_the_tail() {
        let (mut ours, hint, mut peer) = pair().await;
        hint.set();
        ours.write_all(b"last words").await.unwrap();
        drop(ours);
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"last words");
    }
}
