//! [`ClientOptions`]: deadlines and keepalive for a Workload API client.

use std::time::Duration;

/// How long a client waits, and how it notices a server that stopped
/// answering.
///
/// ```
/// use std::time::Duration;
/// use workload_api::ClientOptions;
/// let opts = ClientOptions::default().with_rpc_timeout(Duration::from_secs(3));
/// assert_eq!(opts.rpc_timeout, Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Deadline for reaching the socket and starting HTTP/2 (default 5 s).
    pub connect_timeout: Duration,
    /// Deadline for a unary RPC, and for the first message of a watch
    /// stream (default 10 s). Later messages of a watch have no deadline:
    /// keepalive watches the connection instead.
    pub rpc_timeout: Duration,
    /// The client pings the server this often, even with no RPC running
    /// (HTTP/2 keepalive, default 30 s) ...
    pub keepalive_interval: Duration,
    /// ... and drops the connection when a ping is not answered within
    /// this time (default 10 s); open watch streams then end with an error.
    pub keepalive_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::rpc_timeout`].
    pub fn with_rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::keepalive_interval`] and
    /// [`ClientOptions::keepalive_timeout`].
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }
}
