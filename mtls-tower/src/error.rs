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
    /// The trust policy admits only this side's own trust domain, and
    /// this side holds no SVID yet, so that trust domain is unknown.
    #[error(
        "trust domain {trust_domain} is not admitted: this side holds no SVID yet, so its own trust domain is unknown"
    )]
    NoOwnSvid {
        /// The peer's trust domain.
        trust_domain: TrustDomain,
    },
    /// The authorizer refused the peer.
    #[error("peer {peer} is not authorized by {authorizer}")]
    Unauthorized {
        /// The authenticated peer.
        peer: SpiffeId,
        /// What the authorizer admits ([`crate::Authorizer::describe`]).
        authorizer: String,
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
    /// This client refused the server: its certificate did not verify or
    /// the client's authorizer does not admit it.
    #[error("refused the server at {authority}: {reason}")]
    ServerRejected {
        /// host:port dialed.
        authority: String,
        /// Why, as this client's verifier decided it.
        reason: PeerRejected,
    },
    /// The server refused this client during the handshake.
    #[error("{refusal} ({authority})")]
    Refused {
        /// host:port dialed.
        authority: String,
        /// Who refused whom, and what the server's alert means.
        refusal: ServerRefused,
    },
}

/// The server ended the TLS session with an alert: it refused this
/// client's certificate or identity.
///
/// Under TLS 1.3 a client finishes its handshake before the server has
/// checked the client's certificate, so the refusal usually arrives as
/// the error of the first read or write on an established
/// [`crate::MtlsStream`] (inside an HTTP client's "connection error"),
/// not at connect time; the stream puts this type in that `io::Error`
/// (kind `PermissionDenied`). [`spiffe_core::error_chain`] prints it
/// from the outermost error.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} refused this client{}: {}", server_name(.server), client_name(.client), explain(self))]
pub struct ServerRefused {
    /// The server's verified SPIFFE ID, when the handshake got that far.
    pub server: Option<SpiffeId>,
    /// The SPIFFE ID this client presented, if it had an SVID.
    pub client: Option<SpiffeId>,
    /// The alert the server sent.
    pub alert: rustls::AlertDescription,
    /// Whether it came during the handshake (the connector's error)
    /// rather than on the established connection.
    pub during_handshake: bool,
}

impl std::fmt::Debug for ServerRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The message, so that `{:?}` of an outer error (what `main`
        // returning `Err` prints) shows the reason.
        write!(f, "ServerRefused(\"{self}\")")
    }
}

impl ServerRefused {
    /// The refusal an I/O error carries: a TLS alert received from the
    /// server; `None` for any other error.
    pub(crate) fn from_io(
        error: &std::io::Error,
        server: Option<&SpiffeId>,
        client: Option<&SpiffeId>,
    ) -> Option<Self> {
        let alert = match error.get_ref()?.downcast_ref::<rustls::Error>()? {
            rustls::Error::AlertReceived(alert) => *alert,
            _ => return None,
        };
        if alert == rustls::AlertDescription::CloseNotify {
            return None;
        }
        Some(ServerRefused {
            server: server.cloned(),
            client: client.cloned(),
            alert,
            during_handshake: server.is_none(),
        })
    }
}

fn server_name(server: &Option<SpiffeId>) -> String {
    match server {
        Some(id) => format!("the server {id}"),
        None => "the server".to_owned(),
    }
}

fn client_name(client: &Option<SpiffeId>) -> String {
    match client {
        Some(id) => format!(" ({id})"),
        None => String::new(),
    }
}

fn explain(refused: &ServerRefused) -> String {
    use rustls::AlertDescription as A;
    let (alert, client) = (&refused.alert, &refused.client);
    let what = match alert {
        // Under TLS 1.3 the server judges the client after the client's
        // handshake is done; an access_denied before that is rustls
        // saying the server has no certificate to present (or, under
        // TLS 1.2, its authorizer).
        A::AccessDenied if refused.during_handshake => {
            "it has no SVID to present, or its authorizer does not admit this client's SPIFFE ID"
                .to_owned()
        }
        A::AccessDenied => "its authorizer does not admit this client's SPIFFE ID".to_owned(),
        A::UnknownCA => match client {
            Some(id) => format!(
                "it has no trust bundle that verifies this client's certificate \
                 (trust domain {} unknown to it, or signed by a CA it does not have yet)",
                id.trust_domain()
            ),
            None => "it does not trust the CA of this client's certificate".to_owned(),
        },
        A::CertificateExpired => {
            "it says this client's SVID has expired or is not yet valid".to_owned()
        }
        A::CertificateRequired => {
            "this client presented no certificate (its SVID source holds no SVID)".to_owned()
        }
        A::BadCertificate | A::UnsupportedCertificate | A::CertificateUnknown | A::DecryptError => {
            "it rejected this client's certificate".to_owned()
        }
        _ => "it aborted the TLS session".to_owned(),
    };
    format!("{what} (TLS alert {alert:?})")
}
