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
    /// When every certificate of the validated path (leaf and the
    /// intermediates the path went through) is inside its validity period.
    path_valid: (SystemTime, SystemTime),
}

impl PeerIdentity {
    /// Only verification builds one (see the type's documentation).
    pub(super) fn verified(
        spiffe_id: SpiffeId,
        not_after: SystemTime,
        path_valid: (SystemTime, SystemTime),
    ) -> Self {
        PeerIdentity {
            spiffe_id,
            not_after,
            path_valid,
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

    /// The interval (both ends included, as webpki compares) in which every
    /// certificate of the validated path, the leaf and the intermediates the
    /// path went through, is inside its validity period: the latest
    /// notBefore and the earliest notAfter among them.
    ///
    /// Time enters verification only through these periods, so the same
    /// chain checked against the same bundle gets the same answer at any
    /// instant of this interval. That is what lets a TLS verifier reuse a
    /// verified chain's result (mtls-tower keeps such a cache) instead of
    /// checking the CA signatures on every handshake.
    pub fn path_valid(&self) -> (SystemTime, SystemTime) {
        self.path_valid
    }

    /// Whether `now` lies inside [`Self::path_valid`].
    pub fn path_valid_at(&self, now: SystemTime) -> bool {
        let (from, until) = self.path_valid;
        from <= now && now <= until
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

    /// Whole seconds since the epoch: certificates hold no finer times.
    fn secs(t: SystemTime) -> u64 {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn path_validity_is_the_overlap_of_leaf_and_intermediates() {
        use test_support::CaSpec;
        use time::{Duration, OffsetDateTime};
        let now = OffsetDateTime::now_utc();
        let root = test_support::TestCa::new("example.org");
        // The intermediate starts after the leaf and ends before it.
        let mut spec = CaSpec::new("example.org");
        spec.not_before = now - Duration::seconds(30);
        spec.not_after = now + Duration::minutes(20);
        let intermediate = root.intermediate(spec.clone());
        let leaf = intermediate.leaf("spiffe://example.org/w");
        let bundle =
            crate::X509Bundle::new("example.org".parse().unwrap(), vec![root.root_cert()]).unwrap();
        let peer =
            super::super::verify_x509_svid_full(&leaf.chain, &bundle, SystemTime::now()).unwrap();
        let (from, until) = peer.path_valid();
        assert_eq!(secs(from), spec.not_before.unix_timestamp() as u64);
        assert_eq!(secs(until), spec.not_after.unix_timestamp() as u64);
        // The leaf's own expiry (an hour) is still what not_after reports.
        assert!(peer.not_after() > until);
        assert!(peer.path_valid_at(SystemTime::now()));
        assert!(peer.path_valid_at(from) && peer.path_valid_at(until));
        assert!(!peer.path_valid_at(until + std::time::Duration::from_secs(1)));
        assert!(!peer.path_valid_at(from - std::time::Duration::from_secs(1)));
    }

    #[test]
    fn path_validity_without_intermediates_is_the_leaf_period() {
        let ca = test_support::TestCa::new("example.org");
        let spec = test_support::LeafSpec::new("spiffe://example.org/w");
        let (nb, na) = (spec.not_before, spec.not_after);
        let leaf = ca.leaf_with(spec);
        let bundle =
            crate::X509Bundle::new("example.org".parse().unwrap(), vec![ca.root_cert()]).unwrap();
        let peer =
            super::super::verify_x509_svid_full(&leaf.chain, &bundle, SystemTime::now()).unwrap();
        let (from, until) = peer.path_valid();
        assert_eq!(secs(from), nb.unix_timestamp() as u64);
        assert_eq!(secs(until), na.unix_timestamp() as u64);
        assert_eq!(until, peer.not_after());
    }
}
