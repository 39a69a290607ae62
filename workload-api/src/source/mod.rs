//! Sources: a workload's identity and trust material, kept current from the
//! Workload API by a task the caller runs.

mod backoff;
mod bundles;
mod driver;
mod x509;

pub use backoff::Backoff;
pub use bundles::{JwtSource, X509BundleSource};
pub use driver::SourceTask;
pub use x509::{DEFAULT_CONNECT_WAIT, X509Snapshot, X509Source};

use std::time::Duration;

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

/// Why [`X509Source::connect`] returned without an identity.
///
/// The message says what to check: the address, the registration entry
/// for this process (`unix:uid:N`), or the server's fatal answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// `SPIFFE_ENDPOINT_SOCKET` is unset or not a valid address.
    #[error("cannot locate the Workload API: {0}")]
    Address(#[from] crate::AddressError),
    /// The Workload API answered `PermissionDenied` until the deadline:
    /// it knows no registration entry for this process.
    #[error(
        "no identity for this process after {waited:?}: the Workload API at {address} answered \
         PermissionDenied{hint}"
    )]
    Denied {
        /// How long the source waited.
        waited: Duration,
        /// The endpoint.
        address: String,
        /// What to check, with this process's uid (empty when unknown).
        hint: RegistrationHint,
    },
    /// No connection or no answer until the deadline.
    #[error("no identity for this process after {waited:?}: {why}")]
    Unreachable {
        /// How long the source waited.
        waited: Duration,
        /// The endpoint.
        address: String,
        /// The last failure (connection refused, no answer within the
        /// deadline, the stream closed).
        why: String,
    },
    /// The server gave an answer that retrying cannot fix (`InvalidArgument`,
    /// `Unimplemented`); the source's task has ended.
    #[error("the Workload API at {address} refused this client: {why}")]
    Failed {
        /// The endpoint.
        address: String,
        /// The server's answer.
        why: String,
    },
}

/// The part of [`WaitError::Denied`]'s message that names the selector a
/// registration entry needs (`unix:uid:N` of this process); renders as
/// nothing when the uid cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationHint {
    /// This process's uid.
    pub uid: Option<u32>,
}

impl RegistrationHint {
    /// The hint for the calling process.
    pub fn current() -> Self {
        use std::os::unix::fs::MetadataExt;
        RegistrationHint {
            uid: std::fs::metadata("/proc/self").ok().map(|m| m.uid()),
        }
    }
}

impl std::fmt::Display for RegistrationHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.uid {
            Some(uid) => write!(
                f,
                ": is there a registration entry for unix:uid:{uid} (or another selector of this process)?"
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
