//! [`X509Source`]: a workload's X509-SVID and X.509 bundles.

use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use spiffe_core::{BundleSet, BundleSource, SvidSource, X509Svid};
use tokio::sync::watch;

use super::driver::{self, Core, Feed, SourceTask};
use super::{Backoff, SourceHealth};
use crate::{ClientError, EndpointAddress, WatchStream, WorkloadApiClient, X509Context};

struct Inner {
    core: Core,
    svid: ArcSwapOption<X509Svid>,
    bundles: ArcSwap<BundleSet>,
    svid_generation: watch::Sender<u64>,
    bundle_generation: watch::Sender<u64>,
    hint: Option<String>,
}

impl Feed for Inner {
    type Update = X509Context;

    async fn open(mut client: WorkloadApiClient) -> Result<WatchStream<X509Context>, ClientError> {
        client.watch_x509_context().await
    }

    fn apply(&self, ctx: X509Context) {
        let chosen = match &self.hint {
            Some(h) => ctx
                .svids
                .iter()
                .find(|s| s.hint.as_deref() == Some(h.as_str())),
            None => ctx.svids.first(),
        };
        let svid = chosen.map(|s| Arc::new(s.svid.clone()));
        if self.svid.load().as_deref() != svid.as_deref() {
            self.svid.store(svid);
            self.svid_generation.send_modify(|g| *g += 1);
        }
        if **self.bundles.load() != ctx.bundles {
            self.bundles.store(Arc::new(ctx.bundles));
            self.bundle_generation.send_modify(|g| *g += 1);
        }
    }

    fn withdraw(&self) {
        if self.svid.swap(None).is_some() {
            self.svid_generation.send_modify(|g| *g += 1);
        }
        if !self.bundles.load().is_empty() {
            self.bundles.store(Arc::new(BundleSet::new()));
            self.bundle_generation.send_modify(|g| *g += 1);
        }
    }

    fn core(&self) -> &Core {
        &self.core
    }
}

/// A workload's X509-SVID and X.509 bundles, kept current by a task that
/// watches `FetchX509SVID`.
///
/// The task is returned to the caller ([`SourceTask`]) to spawn or await;
/// it reconnects with capped exponential [`Backoff`], keeps the last good
/// material while the server is unreachable, withdraws it on
/// `PermissionDenied`, discards malformed updates, and ends on
/// `InvalidArgument`/`Unimplemented` or when every handle is dropped.
/// [`X509Source::health`] tells which of these is happening.
///
/// ```no_run
/// # async fn run() -> Result<(), workload_api::AddressError> {
/// use spiffe_core::SvidSource;
/// use workload_api::{EndpointAddress, X509Source};
/// let (source, task) = X509Source::new(EndpointAddress::from_env()?);
/// tokio::spawn(task);
/// let mut changes = source.subscribe();
/// let _ = changes.changed().await;
/// println!("{:?}", source.x509_svid().map(|s| s.spiffe_id().clone()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct X509Source {
    inner: Arc<Inner>,
}

impl fmt::Debug for X509Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Source")
            .field(
                "spiffe_id",
                &self
                    .inner
                    .svid
                    .load()
                    .as_ref()
                    .map(|s| s.spiffe_id().clone()),
            )
            .field("health", &self.health())
            .field("generation", &SvidSource::generation(self))
            .finish()
    }
}

impl X509Source {
    /// A source for `address` with the default backoff, using the first
    /// (default) SVID.
    pub fn new(address: EndpointAddress) -> (Self, SourceTask) {
        Self::with_options(address, Backoff::default(), None)
    }

    /// A source with the given backoff that uses the SVID whose hint is
    /// `hint` (or the default SVID when `hint` is `None`).
    pub fn with_options(
        address: EndpointAddress,
        backoff: Backoff,
        hint: Option<String>,
    ) -> (Self, SourceTask) {
        let inner = Arc::new(Inner {
            core: Core::new(),
            svid: ArcSwapOption::empty(),
            bundles: ArcSwap::from_pointee(BundleSet::new()),
            svid_generation: watch::Sender::new(0),
            bundle_generation: watch::Sender::new(0),
            hint,
        });
        let task = driver::task(&inner, address, backoff);
        (X509Source { inner }, task)
    }

    /// The current health.
    pub fn health(&self) -> SourceHealth {
        *self.inner.core.health.borrow()
    }

    /// A receiver that sees every health change.
    pub fn watch_health(&self) -> watch::Receiver<SourceHealth> {
        self.inner.core.health.subscribe()
    }

    /// How many malformed updates were discarded so far.
    pub fn discarded_updates(&self) -> u64 {
        self.inner.core.discarded()
    }
}

impl SvidSource for X509Source {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        self.inner.svid.load_full()
    }
    fn generation(&self) -> u64 {
        *self.inner.svid_generation.borrow()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.svid_generation.subscribe()
    }
}

/// Holds X.509 authorities: usable where TLS verifies peers.
impl spiffe_core::X509AuthoritySource for X509Source {}

impl BundleSource for X509Source {
    fn bundle_set(&self) -> Arc<BundleSet> {
        self.inner.bundles.load_full()
    }
    fn generation(&self) -> u64 {
        *self.inner.bundle_generation.borrow()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.bundle_generation.subscribe()
    }
}
