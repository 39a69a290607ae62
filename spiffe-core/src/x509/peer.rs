//! [`PeerIdentity`]: who is on the other end of an authenticated connection.

use std::time::SystemTime;

use crate::SpiffeId;

/// The authenticated SPIFFE identity of a connection's peer: its ID and the
/// expiry of the certificate it presented.
///
/// A `PeerIdentity` is a proof: the only way to obtain one is a successful
/// [`super::verify_x509_svid_full`], so holding one means the peer's chain
/// was validated against the bundle of its trust domain and its leaf obeys
/// the X509-SVID rules. The TLS layer puts the value its verifier produced
/// into each request's extensions and the authorization layer reads it
/// there; nothing re-parses the certificate in between.
///
/// ```
/// # use std::time::SystemTime;
/// # fn demo(chain: &[rustls_pki_types::CertificateDer<'_>], bundle: &spiffe_core::X509Bundle)
/// #     -> Result<(), spiffe_core::VerifyError> {
/// let peer = spiffe_core::x509::verify_x509_svid_full(chain, bundle, SystemTime::now())?;
/// println!("{} until {:?}", peer.spiffe_id(), peer.not_after());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    spiffe_id: SpiffeId,
    not_after: SystemTime,
}

impl PeerIdentity {
    /// Only verification builds one (see the type's documentation).
    pub(super) fn verified(spiffe_id: SpiffeId, not_after: SystemTime) -> Self {
        PeerIdentity {
            spiffe_id,
            not_after,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verification_yields_an_identity() {
        let ca = test_support::TestCa::new("example.org");
        let leaf = ca.leaf("spiffe://example.org/ns/default/sa/web");
        let bundle =
            crate::X509Bundle::new("example.org".parse().unwrap(), vec![ca.root_cert()]).unwrap();
        let peer =
            super::super::verify_x509_svid_full(&leaf.chain, &bundle, SystemTime::now()).unwrap();
        assert_eq!(
            peer.spiffe_id().as_str(),
            "spiffe://example.org/ns/default/sa/web"
        );
        assert!(peer.not_after() > SystemTime::now());
        // A leaf from another CA of the same trust domain proves nothing.
        let other = test_support::TestCa::new("example.org");
        let forged = other.leaf("spiffe://example.org/ns/default/sa/web");
        let err = super::super::verify_x509_svid_full(&forged.chain, &bundle, SystemTime::now())
            .unwrap_err();
        assert!(
            matches!(
                err,
                crate::VerifyError::Chain {
                    source: webpki::Error::UnknownIssuer,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
