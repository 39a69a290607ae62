//! [`MtlsAcceptor`]: TCP connections in, authenticated TLS connections out.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::MtlsServerConfig;
use crate::error::AcceptError;
use crate::verified::VerifiedPeers;
use spiffe_core::{ConnectionFacts, PeerIdentity};

/// The default bound on how long a handshake may take.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on handshakes in progress at once.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

type Handshake = Pin<Box<dyn Future<Output = Result<TlsConnection, AcceptError>> + Send>>;

/// Turns a `TcpListener` into TLS connections carrying the peer's identity
/// and the facts of the connection (addresses, SNI, ALPN), taken at accept
/// time.
///
/// Handshakes run concurrently inside the acceptor (no task is spawned:
/// they progress while [`MtlsAcceptor::accept`] or the `Stream` is polled),
/// each bounded by a timeout; at most `max_handshakes` run at once, and no
/// further TCP connection is accepted while that many are in progress.
///
/// ```no_run
/// # async fn demo(config: mtls_tower::MtlsServerConfig) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let mut acceptor = mtls_tower::MtlsAcceptor::new(listener, config);
/// while let Ok(conn) = acceptor.accept().await {
///     println!("{} connected", conn.peer().spiffe_id());
/// }
/// # Ok(()) }
/// ```
pub struct MtlsAcceptor {
    listener: TcpListener,
    tls: TlsAcceptor,
    peers: Arc<VerifiedPeers>,
    timeout: Duration,
    max_handshakes: usize,
    pending: FuturesUnordered<Handshake>,
}

impl MtlsAcceptor {
    /// An acceptor with the default timeout and handshake bound.
    pub fn new(listener: TcpListener, config: MtlsServerConfig) -> Self {
        MtlsAcceptor {
            listener,
            tls: TlsAcceptor::from(config.rustls().clone()),
            peers: config.peers(),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            pending: FuturesUnordered::new(),
        }
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many handshakes may be in progress at once (at least 1).
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max.max(1);
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Handshakes in progress.
    pub fn handshakes_in_progress(&self) -> usize {
        self.pending.len()
    }

    /// The next connection whose handshake completed, or why one failed.
    ///
    /// Errors concern one connection only; keep calling.
    pub async fn accept(&mut self) -> Result<TlsConnection, AcceptError> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next completed handshake.
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<TlsConnection, AcceptError>> {
        while self.pending.len() < self.max_handshakes {
            match self.listener.poll_accept(cx) {
                Poll::Ready(Ok((tcp, remote_addr))) => {
                    self.pending.push(Box::pin(handshake(
                        self.tls.clone(),
                        self.peers.clone(),
                        tcp,
                        remote_addr,
                        self.timeout,
                    )));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(AcceptError::Accept(e))),
                Poll::Pending => break,
            }
        }
        match self.pending.poll_next_unpin(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(result),
            // Empty: the listener has registered the waker.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

async fn handshake(
    tls: TlsAcceptor,
    peers: Arc<VerifiedPeers>,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    timeout: Duration,
) -> Result<TlsConnection, AcceptError> {
    let local_addr = tcp.local_addr().map_err(|source| AcceptError::Handshake {
        remote_addr,
        source,
    })?;
    let stream = match tokio::time::timeout(timeout, tls.accept(tcp)).await {
        Err(_) => return Err(AcceptError::HandshakeTimeout { remote_addr }),
        Ok(Err(source)) => {
            return Err(AcceptError::Handshake {
                remote_addr,
                source,
            });
        }
        Ok(Ok(stream)) => stream,
    };
    let conn = stream.get_ref().1;
    let peer = peers
        .of_connection(conn)
        .ok_or(AcceptError::NoPeerIdentity { remote_addr })?;
    let mut facts = ConnectionFacts::new(local_addr, remote_addr).with_peer(peer);
    if let Some(sni) = conn.server_name() {
        facts = facts.with_sni(sni);
    }
    if let Some(alpn) = conn.alpn_protocol() {
        facts = facts.with_alpn(alpn);
    }
    Ok(TlsConnection { stream, facts })
}

impl Stream for MtlsAcceptor {
    type Item = Result<TlsConnection, AcceptError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx).map(Some)
    }
}

impl std::fmt::Debug for MtlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsAcceptor")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("timeout", &self.timeout)
            .field("max_handshakes", &self.max_handshakes)
            .field("in_progress", &self.pending.len())
            .finish()
    }
}

/// An accepted, authenticated TLS connection.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    /// Always holds the peer: the acceptor yields no connection without one.
    facts: ConnectionFacts,
}

impl TlsConnection {
    /// The authenticated peer, as the handshake's verifier produced it.
    pub fn peer(&self) -> &PeerIdentity {
        self.facts
            .peer()
            .expect("the acceptor builds a TlsConnection only with a verified peer")
    }

    /// What was known when the connection was accepted: both addresses,
    /// SNI, ALPN and the verified peer. [`crate::ConnectionLayer`] puts it
    /// into every request.
    pub fn facts(&self) -> &ConnectionFacts {
        &self.facts
    }

    /// The peer's socket address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.facts.remote_addr()
    }

    /// The address the connection was accepted on.
    pub fn local_addr(&self) -> SocketAddr {
        self.facts.local_addr()
    }

    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.facts.alpn()
    }
}

impl std::fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepted connections put their facts into tonic request extensions:
/// handlers read `request.extensions().get::<ConnectionFacts>()` and its
/// `peer()`, the same value the authz layer reads.
#[cfg(feature = "tonic")]
impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = ConnectionFacts;

    fn connect_info(&self) -> ConnectionFacts {
        self.facts.clone()
    }
}
