//! Mutual TLS with SPIFFE identities for rustls, Tower, hyper, axum and tonic.
//!
//! A few lines turn a service into one that only talks mTLS to peers it
//! authorizes by SPIFFE ID:
//!
//! - [`ServerConfigBuilder`] / [`ClientConfigBuilder`]: rustls configs over
//!   any [`spiffe_core::SvidSource`] and [`spiffe_core::BundleSource`]. The
//!   current SVID is read per handshake and the peer is verified against the
//!   bundle of its own trust domain, so rotation needs no rebuild.
//! - [`Authorizer`]: who may connect ([`authorizer::any`], [`authorizer::exact`],
//!   [`authorizer::one_of`], [`authorizer::member_of`], or any closure);
//!   always chosen explicitly.
//! - [`MtlsAcceptor`]: a `TcpListener` turned into TLS connections carrying
//!   [`ConnectionFacts`]: local and remote address, SNI, ALPN and the
//!   [`PeerIdentity`] the handshake's verifier produced (not a second parse
//!   of the certificate). [`ConnectionLayer`] puts the facts into request
//!   extensions (both types are `spiffe_core`'s, what the `authz` layer
//!   reads); with the `axum` feature the acceptor is an `axum::serve`
//!   listener, `into_make_service` wraps a router so each request carries
//!   the facts, and `Peer` extracts the identity; with `tonic`, accepted
//!   connections carry the facts into tonic request extensions.
//! - [`MtlsConnector`]: a hyper-util connector that originates mTLS and
//!   authorizes the server per target; with `tonic`, a channel over it.
//! - `federation` (feature `federation`, on by default): a SPIFFE bundle
//!   endpoint (Tower service and HTTPS server, `https_web` and
//!   `https_spiffe`) and per-relationship fetchers that keep other trust
//!   domains' bundles current in a source these configs read.
//!
//! Verification order, for both sides: select the bundle of the peer's trust
//! domain (if the [`TrustPolicy`] admits it), validate the chain with webpki
//! (no DNS-name check), apply the X509-SVID leaf rules, then authorize.

mod acceptor;
pub mod authorizer;
mod chain_cache;
mod config;
mod connector;
mod error;
mod layer;
mod rustls_impls;
mod trust;
mod verified;

#[cfg(feature = "axum")]
mod axum_impls;
#[cfg(feature = "federation")]
pub mod federation;

pub use acceptor::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HANDSHAKES, MtlsAcceptor, TlsConnection,
};
pub use authorizer::{Authorizer, TargetAuthorizers};
pub use config::{
    ClientConfigBuilder, DEFAULT_ALPN, MtlsClientConfig, MtlsServerConfig, ServerConfigBuilder,
};
pub use connector::{DEFAULT_CONNECT_TIMEOUT, MtlsConnector, MtlsStream};
pub use error::{AcceptError, ConfigError, ConnectError, PeerRejected, ServerRefused};
pub use layer::{AddConnection, ConnectionLayer};
pub use spiffe_core::error_chain;
pub use spiffe_core::{ConnectionFacts, PeerIdentity};
pub use trust::{TrustPolicy, UnknownAuthorityHook};

#[cfg(feature = "axum")]
pub use axum_impls::{Peer, PeerMakeService, into_make_service};
