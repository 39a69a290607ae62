//! The node API: the seam between an agent and the server.
//!
//! The agent speaks to the server only through [`NodeApi`]; the server's
//! logic answers through [`crate::server::NodeService`]. Between them sits
//! either gRPC over TLS ([`GrpcNodeApi`] and the server's gRPC adapter) or,
//! in one process, a direct call. The types here are the domain side of
//! `proto/node.proto`.

mod convert;
mod discovery_client;
mod grpc;
mod insecure;

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use rustls_pki_types::CertificateDer;
use spiffe_core::{EntryId, SpiffeBundle, SpiffeId};
use svid_ca::RegistrationEntry;

pub use discovery_client::GrpcDiscovery;
pub(crate) use grpc::status_to_error as grpc_status_to_error;
pub use grpc::{GrpcNodeApi, NodeTls};

pub(crate) use convert::{
    endpoint_from_proto, endpoint_to_proto, entry_from_proto, entry_to_proto, policy_from_proto,
    policy_to_proto,
};

/// What attestation gave a node: its identity, its SVID and the trust
/// domain's bundle.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The node's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The node SVID, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The trust domain's bundle.
    pub bundle: SpiffeBundle,
}

/// One message of the sync stream.
#[derive(Debug, Clone, Default)]
pub struct SyncUpdate {
    /// Grows with every change the server makes.
    pub revision: u64,
    /// Whether `entries` is the whole set (the first message).
    pub full: bool,
    /// Entries added or changed.
    pub entries: Vec<RegistrationEntry>,
    /// Ids of removed entries.
    pub removed: Vec<EntryId>,
    /// The local trust domain's bundle, when it changed.
    pub bundle: Option<SpiffeBundle>,
    /// Every federated bundle, when any changed.
    pub federated: Option<Vec<SpiffeBundle>>,
    /// The policy set, when it changed.
    pub policy: Option<crate::policy_feed::PolicyBundle>,
    /// When the server sent it, if it said.
    pub sent_at: Option<std::time::SystemTime>,
}

/// The outcome of one CSR in a batch.
pub type SignOutcome = Result<Vec<CertificateDer<'static>>, String>;

/// The sync stream.
pub type SyncStream = Pin<Box<dyn Stream<Item = Result<SyncUpdate, NodeApiError>> + Send>>;

/// Why a node API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeApiError {
    /// The server refused the caller: unknown, evicted, or not entitled.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The request was malformed or named something that does not exist.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The server could not be reached or did not answer in time.
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// The server failed.
    #[error("server error: {0}")]
    Internal(String),
    /// The server's answer does not decode.
    #[error("malformed answer from the server: {0}")]
    Malformed(String),
}

impl NodeApiError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NodeApiError::Unavailable(_) | NodeApiError::Internal(_)
        )
    }
}

/// What an agent asks of the server.
pub trait NodeApi: Send + Sync + 'static {
    /// Attests with `attestor`'s evidence and has `csr` signed as the node
    /// SVID.
    fn attest(
        &self,
        attestor: &str,
        payload: Vec<u8>,
        csr: Vec<u8>,
    ) -> BoxFuture<'static, Result<Attested, NodeApiError>>;

    /// Renews the caller's node SVID for the key of `csr`.
    fn renew_node(
        &self,
        csr: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<CertificateDer<'static>>, NodeApiError>>;

    /// Opens the sync stream.
    fn sync(&self) -> BoxFuture<'static, Result<SyncStream, NodeApiError>>;

    /// Signs one CSR per entry.
    fn sign_workloads(
        &self,
        csrs: Vec<(EntryId, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<Vec<(EntryId, SignOutcome)>, NodeApiError>>;

    /// Signs a JWT-SVID for `entry` with `audience`.
    fn mint_jwt_svid(
        &self,
        entry: EntryId,
        audience: Vec<String>,
    ) -> BoxFuture<'static, Result<String, NodeApiError>>;
}

/// Default deadline of unary node API calls.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
