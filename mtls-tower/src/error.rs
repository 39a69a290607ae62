//! Errors: why a peer was rejected, why a config or connection failed.

use spiffe_core::{SpiffeId, TrustDomain, VerifyError};

/// Why a peer's certificate was rejected during the handshake.
///
/// Attached to the rustls error (`CertificateError::Other`) where rustls
/// has no variant of its own, so callers can downcast to it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRejected {
    /// The chain is not a valid X509-SVID of a trusted trust domain.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The peer's trust domain is not admitted by the [`crate::TrustPolicy`].
    #[error("trust domain {trust_domain} is not admitted by the trust policy")]
    TrustDomainNotAdmitted {
        /// The peer's trust domain.
        trust_domain: TrustDomain,
    },
    /// The authorizer refused the peer.
    #[error("peer {peer} is not authorized")]
    Unauthorized {
        /// The authenticated peer.
        peer: SpiffeId,
    },
    /// The client has no authorizer for the server name it dialed.
    #[error("no authorizer is configured for server name {server_name}")]
    NoAuthorizerForTarget {
        /// The server name of the connection.
        server_name: String,
    },
}

/// Why a rustls config could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The crypto provider does not support the requested protocol versions.
    #[error("crypto provider cannot serve the requested TLS versions: {0}")]
    Versions(#[source] rustls::Error),
}

/// Why accepting a TLS connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// Accepting the TCP connection failed.
    #[error("accepting a TCP connection failed: {0}")]
    Accept(#[source] std::io::Error),
    /// The TLS handshake failed (peer rejected, protocol error, reset...).
    #[error("TLS handshake with {remote_addr} failed: {source}")]
    Handshake {
        /// The peer's address.
        remote_addr: std::net::SocketAddr,
        /// What failed; a rustls error is inside for TLS failures.
        #[source]
        source: std::io::Error,
    },
    /// The handshake did not finish within the handshake timeout.
    #[error("TLS handshake with {remote_addr} timed out")]
    HandshakeTimeout {
        /// The peer's address.
        remote_addr: std::net::SocketAddr,
    },
    /// The handshake finished but the peer identity could not be read.
    #[error("peer {remote_addr} presented no SPIFFE identity")]
    NoPeerIdentity {
        /// The peer's address.
        remote_addr: std::net::SocketAddr,
    },
}

/// Why an outbound mTLS connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URI has no host.
    #[error("URI {uri} has no host")]
    NoHost {
        /// The URI.
        uri: http::Uri,
    },
    /// The host is not a valid TLS server name.
    #[error("host {host} is not a valid server name")]
    InvalidServerName {
        /// The host.
        host: String,
    },
    /// Connecting TCP failed.
    #[error("connecting to {authority} failed: {source}")]
    Tcp {
        /// host:port dialed.
        authority: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (server rejected, server not authorized...).
    #[error("TLS handshake with {authority} failed: {source}")]
    Handshake {
        /// host:port dialed.
        authority: String,
        /// What failed; a rustls error is inside for TLS failures.
        #[source]
        source: std::io::Error,
    },
    /// The connection did not complete within the connect timeout.
    #[error("connecting to {authority} timed out")]
    Timeout {
        /// host:port dialed.
        authority: String,
    },
    /// The handshake finished but the server identity could not be read.
    #[error("server {authority} presented no SPIFFE identity")]
    NoPeerIdentity {
        /// host:port dialed.
        authority: String,
    },
}
