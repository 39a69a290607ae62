//! [`verify_x509_svid`]: authenticating a peer by its X509-SVID chain.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::{PeerIdentity, VerifyError, X509Bundle, X509Error, cert, rules};
use crate::{SpiffeId, TrustDomain};

/// Finds the X.509 bundle of a trust domain.
///
/// Implemented by [`crate::BundleSet`], by a single [`X509Bundle`] (which
/// answers only for its own trust domain) and by maps keyed by trust domain.
pub trait X509BundleLookup {
    /// The bundle of `td`, if one is known.
    fn x509_bundle(&self, td: &TrustDomain) -> Option<&X509Bundle>;
}

impl X509BundleLookup for X509Bundle {
    fn x509_bundle(&self, td: &TrustDomain) -> Option<&X509Bundle> {
        (self.trust_domain() == td).then_some(self)
    }
}

impl<S: std::hash::BuildHasher> X509BundleLookup
    for std::collections::HashMap<TrustDomain, X509Bundle, S>
{
    fn x509_bundle(&self, td: &TrustDomain) -> Option<&X509Bundle> {
        self.get(td)
    }
}

impl<T: X509BundleLookup + ?Sized> X509BundleLookup for &T {
    fn x509_bundle(&self, td: &TrustDomain) -> Option<&X509Bundle> {
        (**self).x509_bundle(td)
    }
}

/// Verifies a presented X509-SVID chain (leaf first) and returns its SPIFFE ID.
///
/// In this order: the leaf's single URI SAN names the ID (X509-1); the bundle
/// of *that ID's* trust domain is selected, never a pooled set (X509-6,
/// WL-FED-1); the chain is validated with webpki at `now`, with no DNS-name
/// check; the signing certificates on the validated path must have cA and
/// keyCertSign (X509-4); then the leaf rules apply (X509-7). Each failure
/// names its rule.
///
/// ```no_run
/// # fn demo(chain: &[rustls_pki_types::CertificateDer<'_>], bundles: &spiffe_core::BundleSet)
/// #     -> Result<(), spiffe_core::VerifyError> {
/// let id = spiffe_core::verify_x509_svid(chain, bundles, std::time::SystemTime::now())?;
/// println!("peer is {id}");
/// # Ok(()) }
/// ```
pub fn verify_x509_svid(
    chain: &[CertificateDer<'_>],
    bundles: &impl X509BundleLookup,
    now: SystemTime,
) -> Result<SpiffeId, VerifyError> {
    verify_x509_svid_full(chain, bundles, now).map(|v| v.spiffe_id().clone())
}

/// Like [`verify_x509_svid`], returning the proof of the peer's identity:
/// its SPIFFE ID and the leaf's expiry, as a [`PeerIdentity`] that nothing
/// else can build.
pub fn verify_x509_svid_full(
    chain: &[CertificateDer<'_>],
    bundles: &impl X509BundleLookup,
    now: SystemTime,
) -> Result<PeerIdentity, VerifyError> {
    let (leaf_der, intermediates) = chain.split_first().ok_or(X509Error::EmptyChain)?;
    let leaf = cert::parse(leaf_der, 0)?;
    let spiffe_id = rules::leaf_id(&leaf)?;
    let td = spiffe_id.trust_domain();
    let bundle = bundles
        .x509_bundle(td)
        .ok_or_else(|| VerifyError::NoBundle {
            trust_domain: td.clone(),
        })?;
    let chain_err = |source| VerifyError::Chain {
        trust_domain: td.clone(),
        source,
    };
    let ee = EndEntityCert::try_from(leaf_der).map_err(chain_err)?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let path = ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            bundle.trust_anchors(),
            intermediates,
            UnixTime::since_unix_epoch(since_epoch),
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(chain_err)?;
    // webpki checks cA on issuers but not their keyUsage: apply X509-4 to
    // the intermediates the validated path actually went through.
    // The same pass narrows the validity window to the whole path.
    let mut window = (leaf.not_before, leaf.not_after);
    for (i, cert) in path.intermediate_certificates().enumerate() {
        let der = cert.der();
        let info = cert::parse(&der, i + 1)?;
        rules::check_signing(&info, i + 1)?;
        window = (window.0.max(info.not_before), window.1.min(info.not_after));
    }
    rules::check_leaf(&leaf, &spiffe_id)?;
    Ok(PeerIdentity::verified(spiffe_id, leaf.not_after, window))
}
