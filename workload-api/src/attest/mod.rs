//! Caller attestation: from a connection's peer facts to [`Selectors`].

mod proc;
mod unix;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use unix::{DEFAULT_MAX_EXECUTABLE_SIZE, UnixAttestor};

use crate::Selectors;

/// The kernel's account of a Unix socket peer (`SO_PEERCRED`), taken when
/// the connection was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeer {
    /// Effective user id of the peer at `connect()` time.
    pub uid: u32,
    /// Effective group id of the peer at `connect()` time.
    pub gid: u32,
    /// Process id, when the kernel reports one.
    pub pid: Option<i32>,
}

/// Who is calling: the per-connection facts an [`Attestor`] works from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// A peer on the Unix socket.
    Unix(UnixPeer),
    /// A peer on the loopback TCP listener.
    Tcp {
        /// The peer's address.
        peer: SocketAddr,
    },
}

/// Why attestation failed. The server answers `Unavailable` ("workload
/// attestation failed"), so the client retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A file under `/proc` could not be read.
    #[error("reading {path}: {source}")]
    Proc {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("unexpected contents in {path}")]
    ProcFormat {
        /// The file.
        path: PathBuf,
    },
    /// The process changed while it was being inspected (it exited, or its
    /// pid was recycled): the facts read may belong to another process.
    #[error("process {pid} changed during attestation")]
    ProcessChanged {
        /// The pid.
        pid: i32,
    },
    /// The process runs under other ids than the socket credentials say.
    #[error("process {pid} no longer runs as uid {uid}")]
    CredentialsChanged {
        /// The pid.
        pid: i32,
        /// The uid from the socket credentials.
        uid: u32,
    },
    /// The attestor needs a pid and the kernel gave none.
    #[error("the peer's pid is unknown")]
    NoPid,
    /// The executable is larger than the attestor hashes
    /// ([`UnixAttestor::with_max_executable_size`]).
    #[error("executable of process {pid} has {size} bytes, more than the {limit} hashed")]
    ExecutableTooLarge {
        /// The pid.
        pid: i32,
        /// The executable's size.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
}

/// Turns a caller into selectors. Called once per connection, as soon as
/// the server accepts it, on a blocking thread (so it may read files); every
/// RPC on the connection uses the selectors found then.
///
/// Closures implement it:
///
/// ```
/// use workload_api::{Attestor, Caller, Selectors};
/// let everyone_is_web = |_: &Caller| Ok(["k8s:sa:web".parse().unwrap()].into_iter().collect::<Selectors>());
/// fn takes(_: impl Attestor) {}
/// takes(everyone_is_web);
/// ```
pub trait Attestor: Send + Sync + 'static {
    /// The selectors of `caller`. An empty set means "no identity".
    fn attest(&self, caller: &Caller) -> Result<Selectors, AttestError>;
}

impl<F> Attestor for F
where
    F: Fn(&Caller) -> Result<Selectors, AttestError> + Send + Sync + 'static,
{
    fn attest(&self, caller: &Caller) -> Result<Selectors, AttestError> {
        self(caller)
    }
}
