//! Sources: a workload's identity and trust material, kept current from the
//! Workload API by a task the caller runs.

mod backoff;
mod bundles;
mod driver;
mod x509;

pub use backoff::Backoff;
pub use bundles::{JwtSource, X509BundleSource};
pub use driver::SourceTask;
pub use x509::{X509Snapshot, X509Source};

use crate::{ClientOptions, StatusCode};

/// How a source connects and reconnects.
///
/// ```
/// use workload_api::{Backoff, ClientOptions, SourceOptions};
/// let opts = SourceOptions::default()
///     .with_hint("internal")
///     .with_client(ClientOptions::default());
/// assert_eq!(opts.backoff, Backoff::default());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceOptions {
    /// Delays between reconnects.
    pub backoff: Backoff,
    /// For [`X509Source`]: use the SVID with this hint instead of the
    /// first (default) one. Ignored by the bundle sources.
    pub hint: Option<String>,
    /// Deadlines and keepalive of each connection.
    pub client: ClientOptions,
}

impl SourceOptions {
    /// Sets [`SourceOptions::backoff`].
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets [`SourceOptions::hint`].
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets [`SourceOptions::client`].
    pub fn with_client(mut self, client: ClientOptions) -> Self {
        self.client = client;
        self
    }
}

/// How an [`X509Source`] is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceHealth {
    /// No update received yet.
    Connecting,
    /// The last stream delivered an update and is open.
    Ready,
    /// The connection or stream failed, or the server did not answer
    /// within the client's deadlines or keepalive; the last good material
    /// is kept (until it expires) and the task retries after a backoff.
    Reconnecting {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The server said `PermissionDenied`: the material was withdrawn; the
    /// task keeps retrying (the registration may still be propagating).
    Denied,
    /// The server gave an error that retrying cannot fix
    /// (`InvalidArgument`, `Unimplemented`); the task has ended.
    Failed {
        /// The status code.
        code: StatusCode,
    },
    /// Every handle of the source was dropped; the task has ended.
    Closed,
    /// The stream is open but the SVID it last delivered has expired: the
    /// source serves no SVID until the server sends a new one.
    Expired,
}

#[cfg(test)]
mod tests;
