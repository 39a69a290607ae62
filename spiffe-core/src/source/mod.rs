//! The seams through which the workspace reads current identity and trust.
//!
//! A source holds the *current* material behind an atomic pointer, so the
//! hot path (a TLS handshake) reads it without a lock, and publishes a
//! generation number on a [`tokio::sync::watch`] channel, so readiness
//! checks, metrics and tests can wait for a change.

mod file;
mod memory;

pub use file::{FileError, bundle_from_file, svid_from_pem_files};
pub use memory::{MemoryBundleSource, MemorySvidSource};

use std::sync::Arc;

use tokio::sync::watch;

use crate::{BundleSet, X509Svid};

/// Something that holds a workload's current X509-SVID.
///
/// Implemented here by [`MemorySvidSource`]; the Workload API client and
/// the in-process CA provide others.
pub trait SvidSource: Send + Sync + 'static {
    /// The current SVID, or `None` when there is none (not yet fetched, or
    /// withdrawn: stop presenting any identity).
    fn x509_svid(&self) -> Option<Arc<X509Svid>>;

    /// A number that grows on every change of the SVID. Cheap.
    fn generation(&self) -> u64;

    /// A receiver that sees each new generation.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

/// Something that holds the bundles a workload currently trusts.
pub trait BundleSource: Send + Sync + 'static {
    /// A snapshot of the current bundles.
    fn bundle_set(&self) -> Arc<BundleSet>;

    /// A number that grows on every change of the bundles. Cheap.
    fn generation(&self) -> u64;

    /// A receiver that sees each new generation.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

/// A [`BundleSource`] whose bundles carry X.509 authorities, so it can
/// verify X509-SVIDs: what TLS needs.
///
/// A source of JWT keys only (the Workload API's JWT bundles, say) is a
/// `BundleSource` but not an `X509BundleSource`, so passing it where a TLS
/// config needs trust anchors is a compile error instead of a config whose
/// every handshake fails. Implement it only for sources that deliver X.509
/// bundles.
pub trait X509BundleSource: BundleSource {}

impl<T: X509BundleSource + ?Sized> X509BundleSource for Arc<T> {}

impl<T: SvidSource + ?Sized> SvidSource for Arc<T> {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        (**self).x509_svid()
    }
    fn generation(&self) -> u64 {
        (**self).generation()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        (**self).subscribe()
    }
}

impl<T: BundleSource + ?Sized> BundleSource for Arc<T> {
    fn bundle_set(&self) -> Arc<BundleSet> {
        (**self).bundle_set()
    }
    fn generation(&self) -> u64 {
        (**self).generation()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        (**self).subscribe()
    }
}
