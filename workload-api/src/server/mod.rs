//! [`WorkloadApiServer`]: the Workload API served on a Unix socket (and,
//! when configured, on loopback TCP).

mod authority;
pub(crate) mod conn;
mod render;
mod service;

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tonic::transport::Server;

use crate::attest::Attestor;
use crate::proto::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use crate::provider::IdentityProvider;
use service::{Shared, WorkloadService};

/// Limits that keep one server healthy under many or misbehaving callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// Largest request or response message, in bytes (default 4 MiB).
    pub max_message_size: usize,
    /// Open watch streams across all callers; more are refused with
    /// `Unavailable` (default 16,384).
    pub max_streams: usize,
    /// HTTP/2 streams per connection (default 128).
    pub max_streams_per_connection: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_message_size: 4 * 1024 * 1024,
            max_streams: 16_384,
            max_streams_per_connection: 128,
        }
    }
}

impl ServerLimits {
    /// Sets [`ServerLimits::max_message_size`].
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`ServerLimits::max_streams`].
    pub fn with_max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// Sets [`ServerLimits::max_streams_per_connection`].
    pub fn with_max_streams_per_connection(mut self, streams: u32) -> Self {
        self.max_streams_per_connection = streams;
        self
    }
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A TCP listener is not bound to a loopback address (EP-2: TCP only
    /// where the caller can be authenticated by network properties).
    #[error("refusing to serve the Workload API on non-loopback address {addr}")]
    NotLoopback {
        /// The listener's address.
        addr: std::net::SocketAddr,
    },
    /// The listener's address could not be read.
    #[error("reading the listener address: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC transport failed.
    #[error("the gRPC transport failed: {0}")]
    Transport(std::io::Error),
}

/// The SPIFFE Workload API server.
///
/// Every call must carry `workload.spiffe.io: true` (else
/// `InvalidArgument`); the caller is attested from the connection's peer
/// credentials by the [`Attestor`], and the [`IdentityProvider`] says what
/// its selectors earn. Callers with nothing get `PermissionDenied`.
///
/// ```no_run
/// # async fn run() -> Result<(), workload_api::ServerError> {
/// use std::sync::Arc;
/// use workload_api::{MemoryIdentityProvider, UnixAttestor, WorkloadApiServer};
/// let provider = Arc::new(MemoryIdentityProvider::new());
/// let server = WorkloadApiServer::new(provider, Arc::new(UnixAttestor::new()));
/// let listener = tokio::net::UnixListener::bind("/tmp/agent.sock")?;
/// server.serve_unix(listener, std::future::pending()).await
/// # }
/// ```
pub struct WorkloadApiServer {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    limits: ServerLimits,
}

impl std::fmt::Debug for WorkloadApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApiServer")
            .field("limits", &self.limits)
            .field("open_streams", &self.open_streams())
            .finish()
    }
}

impl WorkloadApiServer {
    /// A server with default [`ServerLimits`].
    pub fn new(provider: Arc<dyn IdentityProvider>, attestor: Arc<dyn Attestor>) -> Self {
        Self::with_limits(provider, attestor, ServerLimits::default())
    }

    /// A server with the given limits.
    pub fn with_limits(
        provider: Arc<dyn IdentityProvider>,
        attestor: Arc<dyn Attestor>,
        limits: ServerLimits,
    ) -> Self {
        let (stop, stopping) = watch::channel(false);
        WorkloadApiServer {
            shared: Arc::new(Shared {
                provider,
                attestor,
                streams: Arc::new(Semaphore::new(limits.max_streams)),
                stopping,
            }),
            stop,
            limits,
        }
    }

    /// How many watch streams are open now.
    pub fn open_streams(&self) -> usize {
        self.limits
            .max_streams
            .saturating_sub(self.shared.streams.available_permits())
    }

    fn router(&self) -> tonic::transport::server::Router {
        let svc = SpiffeWorkloadApiServer::new(WorkloadService(Arc::clone(&self.shared)))
            .max_decoding_message_size(self.limits.max_message_size)
            .max_encoding_message_size(self.limits.max_message_size);
        Server::builder()
            .max_concurrent_streams(self.limits.max_streams_per_connection)
            .add_service(svc)
    }

    fn shutdown(&self, signal: impl Future<Output = ()> + Send) -> impl Future<Output = ()> + Send {
        let stop = self.stop.clone();
        async move {
            signal.await;
            stop.send_replace(true);
        }
    }

    /// Serves on `listener` until `shutdown` completes; then open streams
    /// end with `Unavailable` and the future returns. The caller owns the
    /// socket file (its path and permissions).
    pub async fn serve_unix(
        &self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        self.router()
            .serve_with_incoming_shutdown(conn::unix_incoming(listener), self.shutdown(shutdown))
            .await
            .map_err(|e| ServerError::Transport(std::io::Error::other(e)))
    }

    /// Serves on a loopback TCP `listener` until `shutdown` completes.
    /// Callers arrive at the [`Attestor`] as [`crate::Caller::Tcp`].
    pub async fn serve_tcp(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(ServerError::NotLoopback { addr });
        }
        self.router()
            .serve_with_incoming_shutdown(conn::tcp_incoming(listener), self.shutdown(shutdown))
            .await
            .map_err(|e| ServerError::Transport(std::io::Error::other(e)))
    }
}
