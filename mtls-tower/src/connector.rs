//! [`MtlsConnector`]: a hyper-util connector that originates mTLS.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::MtlsClientConfig;
use crate::error::{ConnectError, ServerRefused};
use crate::verified::VerifiedPeers;
use spiffe_core::{PeerIdentity, SpiffeId};

/// The default bound on TCP connect plus TLS handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `http://` or `https://` URIs over mTLS.
///
/// Built on the [`MtlsClientConfig`] of a [`crate::ClientConfigBuilder`], whose
/// authorizer (one for all targets, or one per target host with
/// [`crate::TargetAuthorizers`]) decides which server SPIFFE IDs are
/// acceptable. The name dialed is sent as SNI but never checked against
/// the server certificate. Use with `hyper_util::client::legacy::Client`:
///
/// ```no_run
/// # fn demo(config: mtls_tower::MtlsClientConfig) {
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// let connector = mtls_tower::MtlsConnector::new(config);
/// let client: Client<_, String> = Client::builder(TokioExecutor::new()).build(connector);
/// # }
/// ```
#[derive(Clone)]
pub struct MtlsConnector {
    tls: TlsConnector,
    config: MtlsClientConfig,
    peers: Arc<VerifiedPeers>,
    timeout: Duration,
}

impl MtlsConnector {
    /// A connector over `config`.
    pub fn new(config: MtlsClientConfig) -> Self {
        MtlsConnector {
            tls: TlsConnector::from(config.rustls().clone()),
            peers: config.peers(),
            config,
            timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Sets the bound on TCP connect plus TLS handshake.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects to `uri` (`scheme://host:port`; the port defaults to 443
    /// for `https` and 80 otherwise).
    pub async fn connect(&self, uri: http::Uri) -> Result<MtlsStream, ConnectError> {
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::NoHost { uri: uri.clone() })?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let authority = format!("{host}:{port}");
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| ConnectError::InvalidServerName { host: host.clone() })?;
        let tls = self.tls.clone();
        let attempt = async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|source| ConnectError::Tcp {
                    authority: authority.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            tls.connect(server_name, tcp)
                .await
                .map_err(|source| self.handshake_error(&host, &authority, source))
        };
        let stream = tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| ConnectError::Timeout {
                authority: authority.clone(),
            })??;
        let peer = self
            .peers
            .of_connection(stream.get_ref().1)
            .ok_or(ConnectError::NoPeerIdentity { authority })?;
        Ok(MtlsStream {
            io: TokioIo::new(stream),
            client: self.config.own_id(),
            peer,
        })
    }

    /// Says why a handshake failed: the reason this client's verifier
    /// recorded for `host`, the meaning of the server's alert, or the
    /// I/O error as it is.
    fn handshake_error(&self, host: &str, authority: &str, source: io::Error) -> ConnectError {
        let authority = authority.to_owned();
        let tls_error = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(_)) = tls_error
            && let Some(reason) = self.peers.take_rejection(host)
        {
            return ConnectError::ServerRejected { authority, reason };
        }
        match ServerRefused::from_io(&source, None, self.config.own_id().as_ref()) {
            Some(refusal) => ConnectError::Refused { authority, refusal },
            None => ConnectError::Handshake { authority, source },
        }
    }

    /// A lazily connecting tonic channel to `uri` over this connector.
    ///
    /// Use an `http://host:port` URI: this connector supplies the TLS.
    #[cfg(feature = "tonic")]
    pub fn tonic_channel(self, uri: http::Uri) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from(uri).connect_with_connector_lazy(self)
    }
}

impl std::fmt::Debug for MtlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsConnector")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl tower::Service<http::Uri> for MtlsConnector {
    type Response = MtlsStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<MtlsStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await })
    }
}

/// An outbound mTLS connection to an authorized server.
#[derive(Debug)]
pub struct MtlsStream {
    io: TokioIo<TlsStream<TcpStream>>,
    peer: PeerIdentity,
    /// This client's SPIFFE ID when it connected, for [`ServerRefused`].
    client: Option<SpiffeId>,
}

impl MtlsStream {
    /// The authenticated, authorized server.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.io.inner().get_ref().1.alpn_protocol()
    }

    /// Turns a TLS alert from the server into a [`ServerRefused`] that
    /// names both identities; other results pass unchanged.
    fn explain<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(Err(e)) => Poll::Ready(Err(
                match ServerRefused::from_io(&e, Some(self.peer.spiffe_id()), self.client.as_ref())
                {
                    Some(refusal) => io::Error::new(io::ErrorKind::PermissionDenied, refusal),
                    None => e,
                },
            )),
            other => other,
        }
    }
}

impl Connection for MtlsStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.peer.clone());
        if self.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

/// Tokio's I/O traits, for protocol crates that take them (`h2`,
/// `tokio-util` codecs) without hyper's adapters in between; TLS alerts
/// from the server are explained as for hyper's traits.
impl tokio::io::AsyncRead for MtlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(this.io.inner_mut()).poll_read(cx, buf);
        this.explain(result)
    }
}

impl tokio::io::AsyncWrite for MtlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(this.io.inner_mut()).poll_write(cx, buf);
        this.explain(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(this.io.inner_mut()).poll_flush(cx);
        this.explain(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(this.io.inner_mut()).poll_shutdown(cx);
        this.explain(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(this.io.inner_mut()).poll_write_vectored(cx, bufs);
        this.explain(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.inner().is_write_vectored()
    }
}

impl Read for MtlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        this.explain(result)
    }
}

impl Write for MtlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.explain(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.explain(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.explain(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.explain(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
