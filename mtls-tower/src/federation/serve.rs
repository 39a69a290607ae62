//! Serving a [`BundleEndpoint`] over HTTPS, in either profile.

use std::convert::Infallible;
use std::future::ready;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use spiffe_core::SvidSource;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::endpoint::BundleEndpoint;
use super::error::FederationError;
use super::serving_cert::ReloadingCert;
use crate::rustls_impls::SvidResolver;

/// The TLS side of a bundle endpoint: which certificate it presents. Never
/// asks for a client certificate (WEB-4, SPF-4). TLS 1.3 and 1.2 (Mozilla
/// "intermediate", FED-3), ALPN `http/1.1`.
#[derive(Debug, Clone)]
pub struct EndpointTls {
    config: Arc<ServerConfig>,
}

impl EndpointTls {
    /// Profile `https_web`: the chain and key of two PEM files, typically
    /// from a public CA. The files are checked at each handshake (their
    /// modification time and size) and reloaded when they change; a
    /// reload that fails keeps the previous certificate. They must be
    /// usable now.
    pub fn https_web(
        provider: Arc<CryptoProvider>,
        cert_chain_pem: impl Into<PathBuf>,
        key_pem: impl Into<PathBuf>,
    ) -> Result<Self, FederationError> {
        let cert = ReloadingCert::new(cert_chain_pem.into(), key_pem.into(), provider.clone())?;
        Self::build(provider, Arc::new(cert))
    }

    /// Profile `https_spiffe`: the server's own current X509-SVID, read at
    /// each handshake, so rotation needs nothing more.
    pub fn https_spiffe(
        provider: Arc<CryptoProvider>,
        svid: impl SvidSource,
    ) -> Result<Self, FederationError> {
        let resolver = SvidResolver::new(Arc::new(svid), provider.clone());
        Self::build(provider, Arc::new(resolver))
    }

    fn build(
        provider: Arc<CryptoProvider>,
        resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    ) -> Result<Self, FederationError> {
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(EndpointTls {
            config: Arc::new(config),
        })
    }

    /// The rustls config, for serving with your own accept loop.
    pub fn rustls(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

/// The bound on a TLS handshake and on reading a request, per connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `endpoint` on `listener` over TLS with HTTP/1.1, until the
/// returned future is dropped (which also ends the connections it serves).
/// Accept errors (out of file descriptors, say) are logged and retried
/// after a short pause; handshake and connection errors are logged.
///
/// ```no_run
/// # async fn demo(svids: std::sync::Arc<spiffe_core::MemorySvidSource>, bundles: std::sync::Arc<spiffe_core::MemoryBundleSource>) -> Result<(), Box<dyn std::error::Error>> {
/// use mtls_tower::federation::{BundleEndpoint, EndpointTls, serve};
/// let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
/// let endpoint = BundleEndpoint::from_source("example.org".parse()?, bundles);
/// let tls = EndpointTls::https_spiffe(provider, svids)?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// serve(listener, tls, endpoint).await;
/// # Ok(()) }
/// ```
pub async fn serve(listener: TcpListener, tls: EndpointTls, endpoint: BundleEndpoint) {
    let acceptor = TlsAcceptor::from(tls.config);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => a,
            Err(error) => {
                tracing::warn!(%error, "bundle endpoint cannot accept; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let endpoint = endpoint.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %remote, "bundle endpoint handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "bundle endpoint handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                ready(Ok::<_, Infallible>(endpoint.respond(&req)))
            });
            let served = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, %remote, "bundle endpoint connection ended with an error");
            }
        });
    }
}
