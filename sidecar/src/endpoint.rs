//! Where a service's endpoints are and who must answer there.

use std::net::SocketAddr;

use spiffe_core::SpiffeId;

/// One endpoint of a service: the address of the inbound listener of the
/// sidecar in front of it, and the SPIFFE ID that must answer the mTLS
/// handshake there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The peer sidecar's inbound address.
    pub addr: SocketAddr,
    /// The identity the endpoint registered; the handshake must prove it.
    pub identity: SpiffeId,
}
