//! [`PeerIdentity`]: who is on the other end of an authenticated connection.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;

use super::{cert, rules};
use crate::SpiffeId;

/// The authenticated SPIFFE identity of a connection's peer: its ID and the
/// expiry of the certificate it presented.
///
/// This is the value the TLS layer puts into each request's extensions and
/// the authorization layer reads; holding one means verification succeeded.
/// Build it with [`PeerIdentity::from_verified_leaf`] from a leaf that
/// [`super::verify_x509_svid`] (or a verifier built on it) accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    spiffe_id: SpiffeId,
    not_after: SystemTime,
}

impl PeerIdentity {
    /// An identity from its parts, for callers that verified by other means.
    pub fn new(spiffe_id: SpiffeId, not_after: SystemTime) -> Self {
        PeerIdentity {
            spiffe_id,
            not_after,
        }
    }

    /// Reads the ID and expiry from a leaf that verification already
    /// accepted. `None` if the leaf does not carry exactly one SPIFFE ID.
    pub fn from_verified_leaf(leaf: &CertificateDer<'_>) -> Option<Self> {
        let info = cert::parse(leaf, 0).ok()?;
        let spiffe_id = rules::leaf_id(&info).ok()?;
        Some(PeerIdentity {
            spiffe_id,
            not_after: info.not_after,
        })
    }

    /// The peer's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The notAfter of the certificate the peer presented.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

impl From<super::VerifiedX509Svid> for PeerIdentity {
    fn from(v: super::VerifiedX509Svid) -> Self {
        PeerIdentity::new(v.spiffe_id, v.not_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_identity_of_a_verified_leaf() {
        let ca = test_support::TestCa::new("example.org");
        let leaf = ca.leaf("spiffe://example.org/ns/default/sa/web");
        let bundle =
            crate::X509Bundle::new("example.org".parse().unwrap(), vec![ca.root_cert()]).unwrap();
        let verified =
            super::super::verify_x509_svid_full(&leaf.chain, &bundle, SystemTime::now()).unwrap();
        let peer = PeerIdentity::from_verified_leaf(&leaf.chain[0]).unwrap();
        assert_eq!(peer, PeerIdentity::from(verified));
        assert_eq!(
            peer.spiffe_id().as_str(),
            "spiffe://example.org/ns/default/sa/web"
        );
        assert!(peer.not_after() > SystemTime::now());
        let two = ca.leaf_with(
            test_support::LeafSpec::new("spiffe://example.org/a")
                .uris(&["spiffe://example.org/a", "spiffe://example.org/b"]),
        );
        assert_eq!(PeerIdentity::from_verified_leaf(&two.chain[0]), None);
        assert_eq!(
            PeerIdentity::from_verified_leaf(&CertificateDer::from(vec![0x30, 0])),
            None
        );
    }
}
