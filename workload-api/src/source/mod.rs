//! Sources: a workload's identity and trust material, kept current from the
//! Workload API by a task the caller runs.

mod backoff;
mod bundles;
mod driver;
mod x509;

pub use backoff::Backoff;
pub use bundles::{JwtSource, X509BundleSource};
pub use driver::SourceTask;
pub use x509::X509Source;

use crate::StatusCode;

/// How an [`X509Source`] is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceHealth {
    /// No update received yet.
    Connecting,
    /// The last stream delivered an update and is open.
    Ready,
    /// The connection or stream failed; the last good material is kept and
    /// the task retries after a backoff.
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
}

#[cfg(test)]
mod tests;
