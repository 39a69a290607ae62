//! [`ConnectionFacts`]: what is known about a connection when it is accepted.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::PeerIdentity;

/// The facts of one accepted connection, taken once at accept time where
/// they are true: the socket addresses of both ends and, for TLS, the SNI
/// the client asked for and the ALPN protocol agreed on.
///
/// The acceptor (mtls-tower's, a sidecar's, or an application's own)
/// builds one per connection and puts a clone into every request's
/// extensions; authorization reads ports, addresses, SNI and the peer from
/// it, and from nothing else. The peer is a [`crate::PeerIdentity`], which
/// only verification produces, so facts that name a peer carry the proof
/// that the peer was verified.
///
/// ```
/// use spiffe_core::ConnectionFacts;
/// let facts = ConnectionFacts::new("127.0.0.1:8443".parse()?, "127.0.0.1:50123".parse()?)
///     .with_tls()
///     .with_sni("api.example.org")
///     .with_alpn(b"h2".to_vec());
/// assert_eq!(facts.local_addr().port(), 8443);
/// assert_eq!(facts.sni(), Some("api.example.org"));
/// assert!(facts.is_tls());
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConnectionFacts {
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    tls: bool,
    // Shared: every request's extensions get a clone.
    sni: Option<Arc<str>>,
    alpn: Option<Arc<[u8]>>,
    peer: Option<PeerIdentity>,
}

impl ConnectionFacts {
    /// A plaintext connection accepted on `local_addr` from `remote_addr`.
    pub fn new(local_addr: SocketAddr, remote_addr: SocketAddr) -> Self {
        ConnectionFacts {
            local_addr,
            remote_addr,
            tls: false,
            sni: None,
            alpn: None,
            peer: None,
        }
    }

    /// Marks the connection as TLS (its handshake completed).
    #[must_use]
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// The server name the client sent in its TLS ClientHello.
    #[must_use]
    pub fn with_sni(mut self, sni: impl Into<String>) -> Self {
        self.sni = Some(Arc::from(sni.into()));
        self
    }

    /// The ALPN protocol the TLS handshake agreed on.
    #[must_use]
    pub fn with_alpn(mut self, alpn: impl Into<Vec<u8>>) -> Self {
        self.alpn = Some(Arc::from(alpn.into()));
        self
    }

    /// The peer the TLS handshake verified (implies TLS).
    #[must_use]
    pub fn with_peer(mut self, peer: PeerIdentity) -> Self {
        self.tls = true;
        self.peer = Some(peer);
        self
    }

    /// The verified peer of an mTLS connection; `None` for plaintext and
    /// for TLS without a client certificate.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// The address the connection was accepted on (the destination).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the direct peer (the source).
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The SNI of a TLS connection, if the client sent one.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// The agreed ALPN protocol of a TLS connection, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }
}

impl fmt::Debug for ConnectionFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionFacts")
            .field("local_addr", &self.local_addr)
            .field("remote_addr", &self.remote_addr)
            .field("tls", &self.tls)
            .field("sni", &self.sni)
            .field("peer", &self.peer.as_ref().map(PeerIdentity::spiffe_id))
            .field("alpn", &self.alpn.as_deref().map(String::from_utf8_lossy))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_facts_have_no_tls_details() {
        let f = ConnectionFacts::new(
            "[::1]:15006".parse().unwrap(),
            "[::ffff:10.1.2.3]:4000".parse().unwrap(),
        );
        assert!(!f.is_tls());
        assert_eq!((f.sni(), f.alpn()), (None, None));
        assert_eq!(f.local_addr().port(), 15006);
        assert_eq!(f.remote_addr().port(), 4000);
    }

    /// A TLS connection from 127.0.0.1:2 to 127.0.0.1:1.
    fn tls() -> ConnectionFacts {
        ConnectionFacts::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
        .with_tls()
    }

    #[test]
    fn debug_shows_alpn_as_text() {
        let f = tls().with_alpn(b"h2".to_vec());
        assert!(format!("{f:?}").contains("\"h2\""), "{f:?}");
    }

    #[test]
    fn clones_share_sni_and_alpn_and_compare_by_value() {
        let f = tls().with_sni("api.example.org").with_alpn(b"h2".to_vec());
        let g = f.clone();
        // One per request: a clone copies no bytes.
        assert!(std::ptr::eq(f.sni().unwrap(), g.sni().unwrap()));
        assert!(std::ptr::eq(f.alpn().unwrap(), g.alpn().unwrap()));
        let built_again = tls().with_sni("api.example.org").with_alpn(b"h2".to_vec());
        assert_eq!(f, built_again);
        assert_ne!(f, built_again.with_alpn(b"http/1.1".to_vec()));
    }
}
