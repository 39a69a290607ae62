//! [`X509BundleSource`] and [`JwtSource`]: bundles for verify-only
//! workloads, from `FetchX509Bundles` and `FetchJWTBundles`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use spiffe_core::{BundleSet, BundleSource, SpiffeId};
use tokio::sync::watch;

use super::driver::{self, Core, Feed, SourceTask};
use super::{Backoff, SourceHealth, SourceOptions};
use crate::{ClientError, EndpointAddress, FetchedJwtSvid, WatchStream, WorkloadApiClient};

/// Which bundle RPC a [`Bundles`] feed watches.
trait Kind: Send + Sync + 'static {
    fn open(
        client: WorkloadApiClient,
    ) -> impl Future<Output = Result<WatchStream<BundleSet>, ClientError>> + Send;
}

struct X509Kind;
impl Kind for X509Kind {
    async fn open(mut client: WorkloadApiClient) -> Result<WatchStream<BundleSet>, ClientError> {
        client.watch_x509_bundles().await
    }
}

struct JwtKind;
impl Kind for JwtKind {
    async fn open(mut client: WorkloadApiClient) -> Result<WatchStream<BundleSet>, ClientError> {
        client.watch_jwt_bundles().await
    }
}

struct Bundles<K> {
    core: Core,
    bundles: ArcSwap<BundleSet>,
    generation: watch::Sender<u64>,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K: Kind> Bundles<K> {
    fn new() -> Arc<Self> {
        Arc::new(Bundles {
            core: Core::new(),
            bundles: ArcSwap::from_pointee(BundleSet::new()),
            generation: watch::Sender::new(0),
            _kind: std::marker::PhantomData,
        })
    }

    fn store(&self, set: BundleSet) {
        if **self.bundles.load() != set {
            self.bundles.store(Arc::new(set));
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

impl<K: Kind> Feed for Bundles<K> {
    type Update = BundleSet;
    fn open(
        client: WorkloadApiClient,
    ) -> impl Future<Output = Result<WatchStream<BundleSet>, ClientError>> + Send {
        K::open(client)
    }
    fn apply(&self, set: BundleSet) {
        self.store(set);
    }
    fn withdraw(&self) {
        self.store(BundleSet::new());
    }
    fn core(&self) -> &Core {
        &self.core
    }
}

macro_rules! bundle_source_common {
    ($t:ty) => {
        impl $t {
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

        impl BundleSource for $t {
            fn bundle_set(&self) -> Arc<BundleSet> {
                self.inner.bundles.load_full()
            }
            fn generation(&self) -> u64 {
                *self.inner.generation.borrow()
            }
            fn subscribe(&self) -> watch::Receiver<u64> {
                self.inner.generation.subscribe()
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("trust_domains", &self.inner.bundles.load().len())
                    .field("health", &self.health())
                    .field("generation", &BundleSource::generation(self))
                    .finish()
            }
        }
    };
}

/// The X.509 bundles a workload trusts, kept current from
/// `FetchX509Bundles` (for workloads that verify peers but hold no SVID).
/// Same task, backoff and health rules as [`crate::X509Source`].
#[derive(Clone)]
pub struct X509BundleSource {
    inner: Arc<Bundles<X509Kind>>,
}

impl X509BundleSource {
    /// A source for `address` and its task.
    pub fn new(address: EndpointAddress, backoff: Backoff) -> (Self, SourceTask) {
        Self::with_options(address, SourceOptions::default().with_backoff(backoff))
    }

    /// A source with the given options (the hint is not used).
    pub fn with_options(address: EndpointAddress, options: SourceOptions) -> (Self, SourceTask) {
        let inner = Bundles::new();
        let task = driver::task(&inner, address, &options);
        (X509BundleSource { inner }, task)
    }
}

bundle_source_common!(X509BundleSource);

/// Holds X.509 authorities: usable where TLS verifies peers.
impl spiffe_core::X509AuthoritySource for X509BundleSource {}

/// JWT material from the Workload API: the JWT bundles, kept current from
/// `FetchJWTBundles` (its [`BundleSource`] view holds JWT keys only), and
/// JWT-SVIDs fetched on demand.
#[derive(Clone)]
pub struct JwtSource {
    inner: Arc<Bundles<JwtKind>>,
    address: EndpointAddress,
    client: crate::ClientOptions,
}

impl JwtSource {
    /// A source for `address` and its task.
    pub fn new(address: EndpointAddress, backoff: Backoff) -> (Self, SourceTask) {
        Self::with_options(address, SourceOptions::default().with_backoff(backoff))
    }

    /// A source with the given options (the hint is not used).
    pub fn with_options(address: EndpointAddress, options: SourceOptions) -> (Self, SourceTask) {
        let inner = Bundles::new();
        let task = driver::task(&inner, address.clone(), &options);
        let client = options.client;
        (
            JwtSource {
                inner,
                address,
                client,
            },
            task,
        )
    }

    /// Fetches fresh JWT-SVIDs for `audience` (every identity of the
    /// workload when `spiffe_id` is `None`). Not cached: each call asks the
    /// server, which signs new tokens.
    pub async fn fetch_jwt_svids(
        &self,
        audience: &[&str],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<Vec<FetchedJwtSvid>, ClientError> {
        let mut client = WorkloadApiClient::connect_with(&self.address, self.client).await?;
        client.fetch_jwt_svids(audience, spiffe_id).await
    }
}

bundle_source_common!(JwtSource);
