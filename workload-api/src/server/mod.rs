//! [`WorkloadApiServer`]: the Workload API served on a Unix socket (and,
//! when configured, on loopback TCP).

pub(crate) mod accept;
mod authority;
pub(crate) mod conn;
mod render;
mod service;
mod share;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tonic::transport::Server;

use crate::attest::Attestor;
use crate::proto::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use crate::provider::IdentityProvider;
use accept::AcceptConfig;
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
    /// Open watch streams per caller (Unix uid, or TCP peer address); more
    /// are refused with `Unavailable` (default 1,024).
    pub max_streams_per_caller: usize,
    /// Open connections; at the cap the server stops accepting and
    /// newcomers wait in the listen backlog (default 4,096).
    pub max_connections: usize,
    /// A connection on which no RPC runs or starts for this long is
    /// closed, after at most twice this time (default 5 minutes).
    pub idle_timeout: Duration,
    /// The server pings each connection this often (HTTP/2 keepalive,
    /// default 60 s) ...
    pub keepalive_interval: Duration,
    /// ... and closes it when the ping is not answered within this time
    /// (default 20 s), releasing its streams.
    pub keepalive_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_message_size: 4 * 1024 * 1024,
            max_streams: 16_384,
            max_streams_per_connection: 128,
            max_streams_per_caller: 1_024,
            max_connections: 4_096,
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
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

    /// Sets [`ServerLimits::max_streams_per_caller`].
    pub fn with_max_streams_per_caller(mut self, streams: usize) -> Self {
        self.max_streams_per_caller = streams;
        self
    }

    /// Sets [`ServerLimits::max_connections`].
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets [`ServerLimits::idle_timeout`].
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`ServerLimits::keepalive_interval`] and
    /// [`ServerLimits::keepalive_timeout`].
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
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
/// `InvalidArgument`); each connection is attested once, when it is
/// accepted, from its peer credentials by the [`Attestor`], and the
/// [`IdentityProvider`] says what its selectors earn. Callers with nothing
/// get `PermissionDenied`.
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
    connections: Arc<Semaphore>,
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
                shares: share::Shares::new(limits.max_streams_per_caller),
                stopping,
            }),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
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
            .http2_keepalive_interval(Some(self.limits.keepalive_interval))
            .http2_keepalive_timeout(Some(self.limits.keepalive_timeout))
            .add_service(svc)
    }

    fn accept_config(&self) -> AcceptConfig {
        AcceptConfig {
            attestor: Arc::clone(&self.shared.attestor),
            connections: Arc::clone(&self.connections),
            idle_timeout: self.limits.idle_timeout,
        }
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.limits
            .max_connections
            .saturating_sub(self.connections.available_permits())
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
            .serve_with_incoming_shutdown(
                accept::incoming(listener, self.accept_config()),
                self.shutdown(shutdown),
            )
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
            .serve_with_incoming_shutdown(
                accept::incoming(listener, self.accept_config()),
                self.shutdown(shutdown),
            )
            .await
            .map_err(|e| ServerError::Transport(std::io::Error::other(e)))
    }
}
