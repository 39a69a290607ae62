//! [`PeerIdentity`]: who is on the other end of an authenticated connection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use spiffe_core::SpiffeId;
use x509_parser::extensions::GeneralName;

/// The authenticated SPIFFE identity of a connection's peer.
///
/// Only produced for a peer whose X509-SVID chain the verifiers accepted
/// and whose ID the authorizer admitted; the server side puts it into
/// request extensions, where handlers read it as proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    spiffe_id: SpiffeId,
    not_after: SystemTime,
}

impl PeerIdentity {
    /// The peer's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The notAfter of the certificate the peer presented.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Reads the identity from a leaf the verifiers already accepted.
    ///
    /// Returns `None` if the leaf does not carry exactly one SPIFFE ID,
    /// which cannot happen after verification.
    pub(crate) fn from_verified_leaf(leaf: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut uris = san.value.general_names.iter().filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        });
        let uri = uris.next()?;
        if uris.next().is_some() {
            return None;
        }
        let spiffe_id = uri.parse().ok()?;
        let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
        Some(PeerIdentity {
            spiffe_id,
            not_after: UNIX_EPOCH + Duration::from_secs(secs),
        })
    }

    /// Reads the peer identity of an established rustls connection.
    pub(crate) fn from_connection(conn: &rustls::CommonState) -> Option<Self> {
        conn.peer_certificates()
            .and_then(|c| c.first())
            .and_then(Self::from_verified_leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{LeafSpec, TestCa};

    #[test]
    fn reads_id_and_expiry_from_leaf() {
        let ca = TestCa::new("example.org");
        let leaf = ca.leaf("spiffe://example.org/ns/default/sa/web");
        let p = PeerIdentity::from_verified_leaf(&leaf.chain[0]).unwrap();
        assert_eq!(
            p.spiffe_id().as_str(),
            "spiffe://example.org/ns/default/sa/web"
        );
        let left = p.not_after().duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(50 * 60) && left <= Duration::from_secs(3600));
    }

    #[test]
    fn refuses_leaf_with_two_uris_or_garbage() {
        let ca = TestCa::new("example.org");
        let two = ca.leaf_with(
            LeafSpec::new("spiffe://example.org/a")
                .uris(&["spiffe://example.org/a", "spiffe://example.org/b"]),
        );
        assert!(PeerIdentity::from_verified_leaf(&two.chain[0]).is_none());
        assert!(
            PeerIdentity::from_verified_leaf(&CertificateDer::from(vec![0x30, 0x00])).is_none()
        );
    }
}
