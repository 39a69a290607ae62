//! What the server hands a caller: the [`IdentityProvider`] seam.

mod memory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use spiffe_core::{BundleSet, JwtError, SpiffeId, TrustDomain, X509Svid};
use tokio::sync::watch;

pub use memory::{MemoryIdentityProvider, ProviderError};

use crate::Selectors;

/// One X509-SVID a caller is entitled to, with its optional hint.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedSvid {
    /// The SVID (chain and key).
    pub svid: Arc<X509Svid>,
    /// An operator-chosen label for the SVID (WL-9), if any.
    pub hint: Option<String>,
}

/// Everything one caller is entitled to right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadIdentity {
    /// The caller's SVIDs; the first is the default identity (WL-10).
    /// Empty: the caller has no identity (`PermissionDenied`).
    pub svids: Vec<IssuedSvid>,
    /// The bundles of the SVIDs' own trust domains and of the federated
    /// trust domains the caller may trust.
    pub bundles: Arc<BundleSet>,
}

impl WorkloadIdentity {
    /// Whether the caller has no identity.
    pub fn is_empty(&self) -> bool {
        self.svids.is_empty()
    }

    /// The trust domains of the SVIDs.
    pub fn own_trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.svids.iter().map(|s| s.svid.spiffe_id().trust_domain())
    }
}

/// Why a JWT-SVID could not be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// No JWT signing key is configured for the subject's trust domain.
    #[error("no JWT signing key for trust domain {trust_domain}")]
    NoSigningKey {
        /// The subject's trust domain.
        trust_domain: TrustDomain,
    },
    /// Signing failed.
    #[error("signing the JWT-SVID failed: {0}")]
    Signing(#[from] JwtError),
    /// The issuing authority cannot be reached now; the caller may retry.
    #[error("the JWT issuer is unavailable")]
    Unavailable,
}

/// The future returned by [`IdentityProvider::mint_jwt_svid`].
pub type MintFuture = Pin<Box<dyn Future<Output = Result<String, MintError>> + Send>>;

/// The source of identities the server hands out.
///
/// The server attests a caller once per RPC, asks [`identity`] for that
/// caller's selectors, and re-asks whenever [`subscribe`] reports a change,
/// sending the caller the full new state when its part changed.
///
/// [`identity`]: IdentityProvider::identity
/// [`subscribe`]: IdentityProvider::subscribe
pub trait IdentityProvider: Send + Sync + 'static {
    /// The current SVIDs and bundles for `selectors`. Cheap: it is called
    /// once per open stream on every change.
    fn identity(&self, selectors: &Selectors) -> WorkloadIdentity;

    /// A receiver whose value grows on every change of any identity or
    /// bundle. When the sender is dropped, open streams end.
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// Signs a JWT-SVID for `subject` with `audience` (never empty). The
    /// server only asks for subjects the caller is entitled to.
    fn mint_jwt_svid(&self, subject: &SpiffeId, audience: &[String]) -> MintFuture;
}

impl<T: IdentityProvider + ?Sized> IdentityProvider for Arc<T> {
    fn identity(&self, selectors: &Selectors) -> WorkloadIdentity {
        (**self).identity(selectors)
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        (**self).subscribe()
    }
    fn mint_jwt_svid(&self, subject: &SpiffeId, audience: &[String]) -> MintFuture {
        (**self).mint_jwt_svid(subject, audience)
    }
}
