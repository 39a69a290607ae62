//! The SPIFFE Workload API on the wire: server, client and sources.
//!
//! - [`WorkloadApiServer`] serves the five Workload API RPCs on a Unix
//!   socket, attests each caller from its peer credentials through an
//!   [`Attestor`] (built in: [`UnixAttestor`]) and hands out what an
//!   [`IdentityProvider`] (built in: [`MemoryIdentityProvider`]) grants.
//! - [`WorkloadApiClient`] talks to any Workload API (ours, SPIRE's),
//!   located explicitly or through `SPIFFE_ENDPOINT_SOCKET`
//!   ([`EndpointAddress`]).
//! - [`X509Source`] keeps a workload's SVID and bundles current and
//!   implements spiffe-core's [`SvidSource`](spiffe_core::SvidSource) and
//!   [`BundleSource`](spiffe_core::BundleSource).
//!
//! The protocol follows the project's SPIFFE rules EP-* and WL-*
//! (`docs/spec/spiffe.md`). The protobuf code is generated from `proto/workload.proto`,
//! which has no `package`, so the paths are `/SpiffeWorkloadAPI/<Method>`.

#[doc(hidden)]
#[path = "fuzz_hooks.rs"]
pub mod __fuzz;
mod address;
mod attest;
mod client;
mod proto;
mod provider;
pub(crate) mod server;
mod source;

pub use address::{AddressError, ENDPOINT_SOCKET_ENV, EndpointAddress};
pub use attest::{
    AttestError, Attestor, Caller, DEFAULT_MAX_EXECUTABLE_SIZE, UnixAttestor, UnixPeer,
};
pub use client::{
    ClientError, ClientOptions, FetchedJwtSvid, MalformedResponse, StatusCode, ValidatedJwtSvid,
    WatchStream, WorkloadApiClient, WorkloadSvid, X509Context,
};
pub use provider::{
    IdentityProvider, IssuedSvid, MemoryIdentityProvider, MintError, MintFuture, ProviderError,
    WorkloadIdentity,
};
pub use server::{ServerError, ServerLimits, WorkloadApiServer};
pub use source::{
    Backoff, DEFAULT_CONNECT_WAIT, JwtSource, RegistrationHint, SourceHealth, SourceOptions,
    SourceTask, WaitError, X509BundleSource, X509Snapshot, X509Source,
};
/// The registration vocabulary (selectors, entry ids, registration
/// entries), defined once in spiffe-core with one validation rule shared
/// with svid-ca, and re-exported so this crate's API keeps its names.
pub use spiffe_core::{
    EntryId, EntryIdError, EntryRuleError, MAX_HINT_LEN, MAX_SELECTOR_LEN, RegistrationEntry,
    Selector, SelectorError, Selectors,
};

/// The README's examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
