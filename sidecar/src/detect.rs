//! Protocol detection on the first bytes of a connection.
//!
//! A bounded read (deciding on at most [`SNIFF_LEN`] bytes, reading at
//! most [`READ_AHEAD`]) with a deadline decides
//! between TLS, HTTP/2 with prior knowledge, HTTP/1.x and opaque TCP; the
//! bytes read are replayed to whoever handles the connection next
//! ([`Prefixed`]). A client that sends nothing before the deadline is
//! opaque TCP, so server-first protocols work after the detection timeout
//! (and immediately when their port declares `tcp`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most bytes detection needs to decide: the HTTP/2 connection
/// preface.
pub const SNIFF_LEN: usize = H2_PREFACE.len();

/// The most bytes detection reads: room for a ClientHello with a
/// post-quantum key share.
pub const READ_AHEAD: usize = 4096;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HTTP1_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A TLS handshake record.
    Tls,
    /// The HTTP/2 connection preface.
    Http2,
    /// An HTTP/1.x request line.
    Http1,
    /// Anything else, or nothing before the deadline.
    Tcp,
}

/// Classifies `bytes` if they already decide; `None` while they are a
/// prefix of more than one answer.
pub fn classify(bytes: &[u8]) -> Option<Detected> {
    if bytes.is_empty() {
        return None;
    }
    if bytes[0] == 0x16 {
        // TLS record: content type handshake, then version major 3.
        return match bytes.get(1) {
            None => None,
            Some(3) => Some(Detected::Tls),
            Some(_) => Some(Detected::Tcp),
        };
    }
    let n = bytes.len().min(H2_PREFACE.len());
    let h2_possible = bytes[..n] == H2_PREFACE[..n];
    if h2_possible && bytes.len() >= H2_PREFACE.len() {
        return Some(Detected::Http2);
    }
    let mut h1_possible = false;
    for m in HTTP1_METHODS {
        let k = bytes.len().min(m.len());
        if bytes[..k] == m[..k] {
            if bytes.len() >= m.len() {
                return Some(Detected::Http1);
            }
            h1_possible = true;
        }
    }
    if h2_possible || h1_possible {
        None
    } else {
        Some(Detected::Tcp)
    }
}

/// Reads until the first bytes decide, [`SNIFF_LEN`] bytes were read, the
/// peer closed, or `timeout` passed; returns the answer and the bytes read.
///
/// Each read takes what has arrived, up to [`READ_AHEAD`] bytes in all:
/// a TLS ClientHello then usually reaches the handshake from the replayed
/// bytes, without a second read from the socket.
pub async fn detect<S: AsyncRead + Unpin>(
    io: &mut S,
    timeout: Duration,
) -> io::Result<(Detected, Bytes)> {
    let mut buf = BytesMut::with_capacity(READ_AHEAD);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(d) = classify(&buf) {
            return Ok((d, buf.freeze()));
        }
        if buf.len() >= SNIFF_LEN {
            return Ok((Detected::Tcp, buf.freeze()));
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Err(_) | Ok(Ok(0)) => return Ok((Detected::Tcp, buf.freeze())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream whose first reads return bytes already taken from it.
    #[derive(Debug)]
    pub struct Prefixed<S> {
        prefix: Bytes,
        #[pin]
        inner: S,
    }
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read first.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_decides_on_the_shortest_prefix() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(&[0x16]), None);
        assert_eq!(classify(&[0x16, 3, 1]), Some(Detected::Tls));
        assert_eq!(classify(&[0x16, 9]), Some(Detected::Tcp));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET "), Some(Detected::Http1));
        assert_eq!(classify(b"GETX"), Some(Detected::Tcp));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"POST "), Some(Detected::Http1));
        assert_eq!(classify(b"PRI * HTTP/2.0"), None);
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http2));
        assert_eq!(classify(b"PRI * HTTP/1.1"), Some(Detected::Tcp));
        assert_eq!(classify(b"\x00\x00\x00\x0a"), Some(Detected::Tcp));
        assert_eq!(classify(b"SSH-2.0-"), Some(Detected::Tcp));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_tcp_after_the_timeout() {
        let (mut a, _b) = tokio::io::duplex(64);
        let (d, bytes) = detect(&mut a, Duration::from_millis(100)).await.unwrap();
        assert_eq!(d, Detected::Tcp);
        assert!(bytes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn split_request_line_is_http1_and_replayed_whole() {
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            b.write_all(b"GE").await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            b.write_all(b"T / HTTP/1.1\r\n\r\n").await.unwrap();
            b
        });
        let (d, bytes) = detect(&mut a, Duration::from_millis(100)).await.unwrap();
        assert_eq!(d, Detected::Http1);
        let _b = writer.await.unwrap();
        let mut replay = Prefixed::new(bytes, a);
        let mut out = [0u8; 16];
        replay.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn what_has_arrived_is_taken_in_one_read_up_to_the_read_ahead() {
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = tokio::io::duplex(3 * READ_AHEAD);
        // A ClientHello-sized first flight: all of it comes back to be
        // replayed, not only the bytes that decided.
        let mut hello = vec![0x16, 3, 1];
        hello.resize(1500, 0xab);
        b.write_all(&hello).await.unwrap();
        let (d, bytes) = detect(&mut a, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d, Detected::Tls);
        assert_eq!(&bytes[..], &hello[..]);
        // More than the read-ahead: the rest stays in the stream.
        let big = vec![b'G'; 2 * READ_AHEAD];
        b.write_all(&big).await.unwrap();
        let (d, bytes) = detect(&mut a, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d, Detected::Tcp);
        assert_eq!(bytes.len(), READ_AHEAD);
        let mut rest = vec![0u8; READ_AHEAD];
        a.read_exact(&mut rest).await.unwrap();
        assert!(rest.iter().all(|c| *c == b'G'));
    }

    #[tokio::test(start_paused = true)]
    async fn partial_preface_then_silence_is_tcp() {
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = tokio::io::duplex(64);
        b.write_all(b"PRI * HT").await.unwrap();
        let (d, bytes) = detect(&mut a, Duration::from_millis(100)).await.unwrap();
        assert_eq!(d, Detected::Tcp);
        assert_eq!(&bytes[..], b"PRI * HT");
    }
}
