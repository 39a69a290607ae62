//! [`X509Source`]: a workload's X509-SVID and X.509 bundles, published
//! together as one [`X509Snapshot`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use spiffe_core::{BundleSet, BundleSource, SvidSource, X509Svid};
use tokio::sync::watch;

use super::driver::{self, Core, Feed, SourceTask};
use super::{RegistrationHint, SourceHealth, SourceOptions, WaitError};
use crate::{ClientError, EndpointAddress, WatchStream, WorkloadApiClient, X509Context};

/// The SVID and the bundles of one update, published together: a reader
/// of one snapshot never sees a new SVID with the bundles from before it.
#[derive(Debug, Clone)]
pub struct X509Snapshot {
    svid: Option<Arc<X509Svid>>,
    bundles: Arc<BundleSet>,
    generation: u64,
}

impl X509Snapshot {
    /// The SVID, unless there is none or it has expired (an expired SVID
    /// is never served).
    pub fn svid(&self) -> Option<&Arc<X509Svid>> {
        self.svid
            .as_ref()
            .filter(|s| s.not_after() > SystemTime::now())
    }

    /// The X.509 bundles of the same update.
    pub fn bundles(&self) -> &Arc<BundleSet> {
        &self.bundles
    }

    /// Counts published snapshots; 0 before the first update.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

struct Inner {
    core: Core,
    state: ArcSwap<X509Snapshot>,
    svid_generation: watch::Sender<u64>,
    bundle_generation: watch::Sender<u64>,
    hint: Option<String>,
}

impl Inner {
    /// Publishes `svid` and `bundles` in one store, then announces what
    /// changed.
    fn publish(&self, svid: Option<Arc<X509Svid>>, bundles: BundleSet) {
        let old = self.state.load_full();
        let svid_changed = old.svid.as_deref() != svid.as_deref();
        let bundles_changed = *old.bundles != bundles;
        if !svid_changed && !bundles_changed {
            return;
        }
        self.state.store(Arc::new(X509Snapshot {
            svid,
            bundles: Arc::new(bundles),
            generation: old.generation + 1,
        }));
        if svid_changed {
            self.svid_generation.send_modify(|g| *g += 1);
        }
        if bundles_changed {
            self.bundle_generation.send_modify(|g| *g += 1);
        }
    }
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
        self.publish(svid, ctx.bundles);
    }

    fn withdraw(&self) {
        self.publish(None, BundleSet::new());
    }

    fn core(&self) -> &Core {
        &self.core
    }
}

/// How long [`X509Source::from_env`] callers usually wait for the first
/// SVID: 10 s, enough for an agent that is itself still attesting.
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A workload's X509-SVID and X.509 bundles, kept current by a task that
/// watches `FetchX509SVID`.
///
/// The task is returned to the caller ([`SourceTask`]) to spawn or await;
/// it reconnects with capped exponential [`Backoff`](crate::Backoff), keeps
/// the last good material while the server is unreachable, withdraws it on
/// `PermissionDenied`, discards malformed updates, and ends on
/// `InvalidArgument`/`Unimplemented` or when every handle is dropped. A
/// server that accepts but does not answer within the client's deadlines,
/// or stops answering keepalive pings, makes the source `Reconnecting`;
/// an expired SVID is never served. [`X509Source::health`] tells which of
/// these is happening.
///
/// Each update publishes the SVID and the bundles in one
/// [`X509Snapshot`]; [`X509Source::snapshot`] reads both consistently.
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
        let snapshot = self.snapshot();
        f.debug_struct("X509Source")
            .field("spiffe_id", &snapshot.svid().map(|s| s.spiffe_id().clone()))
            .field("health", &self.health())
            .field("generation", &snapshot.generation())
            .finish()
    }
}

impl X509Source {
    /// A source for `address` with the default [`SourceOptions`], using the
    /// first (default) SVID.
    pub fn new(address: EndpointAddress) -> (Self, SourceTask) {
        Self::with_options(address, SourceOptions::default())
    }

    /// A source with the given options.
    pub fn with_options(address: EndpointAddress, options: SourceOptions) -> (Self, SourceTask) {
        let inner = Arc::new(Inner {
            core: Core::new(),
            state: ArcSwap::from_pointee(X509Snapshot {
                svid: None,
                bundles: Arc::new(BundleSet::new()),
                generation: 0,
            }),
            svid_generation: watch::Sender::new(0),
            bundle_generation: watch::Sender::new(0),
            hint: options.hint.clone(),
        });
        let task = driver::task(&inner, address, &options);
        (X509Source { inner }, task)
    }

    /// Connects to the Workload API named by `SPIFFE_ENDPOINT_SOCKET`,
    /// spawns the source's task on the current tokio runtime, and waits up
    /// to `wait` for the first SVID, the way go-spiffe's `NewX509Source`
    /// does. The error says why there is no identity:
    ///
    /// ```text
    /// no identity for this process after 10s: the Workload API at unix:///run/agent.sock
    /// answered PermissionDenied: is there a registration entry for unix:uid:1000 (or another
    /// selector of this process)?
    /// ```
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), workload_api::WaitError> {
    /// use workload_api::{DEFAULT_CONNECT_WAIT, X509Source};
    /// let source = X509Source::from_env(DEFAULT_CONNECT_WAIT).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub async fn from_env(wait: Duration) -> Result<Self, WaitError> {
        Self::connect(EndpointAddress::from_env()?, SourceOptions::default(), wait).await
    }

    /// [`X509Source::from_env`] for an explicit address and options.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub async fn connect(
        address: EndpointAddress,
        options: SourceOptions,
        wait: Duration,
    ) -> Result<Self, WaitError> {
        let shown = address.to_string();
        let (source, task) = Self::with_options(address, options);
        tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "X509Source stopped");
            }
        });
        source.wait_ready(&shown, wait).await?;
        Ok(source)
    }

    /// Waits until the source holds an unexpired SVID, at most `wait`.
    async fn wait_ready(&self, address: &str, wait: Duration) -> Result<(), WaitError> {
        let mut health = self.watch_health();
        let ready = async {
            loop {
                let now = *health.borrow_and_update();
                match now {
                    SourceHealth::Ready if self.x509_svid().is_some() => return Ok(()),
                    SourceHealth::Failed { .. } => return Err(()),
                    _ => {}
                }
                if health.changed().await.is_err() {
                    return Err(());
                }
            }
        };
        let failed = match tokio::time::timeout(wait, ready).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(())) => true,
            Err(_elapsed) => false,
        };
        let why = self
            .inner
            .core
            .last_error()
            .unwrap_or_else(|| "no answer from the Workload API yet".to_owned());
        let address = address.to_owned();
        Err(if failed {
            WaitError::Failed { address, why }
        } else if self.health() == SourceHealth::Denied {
            WaitError::Denied {
                waited: wait,
                address,
                hint: RegistrationHint::current(),
            }
        } else {
            WaitError::Unreachable {
                waited: wait,
                address,
                why,
            }
        })
    }

    /// The SVID and bundles of the latest update, together.
    pub fn snapshot(&self) -> Arc<X509Snapshot> {
        self.inner.state.load_full()
    }

    /// The current health; [`SourceHealth::Expired`] when the task is
    /// ready but the SVID it holds has expired.
    pub fn health(&self) -> SourceHealth {
        let health = *self.inner.core.health.borrow();
        let snapshot = self.inner.state.load();
        if health == SourceHealth::Ready && snapshot.svid.is_some() && snapshot.svid().is_none() {
            return SourceHealth::Expired;
        }
        health
    }

    /// A receiver that sees every health change reported by the task.
    pub fn watch_health(&self) -> watch::Receiver<SourceHealth> {
        self.inner.core.health.subscribe()
    }

    /// How many malformed updates were discarded so far.
    pub fn discarded_updates(&self) -> u64 {
        self.inner.core.discarded()
    }
}

impl SvidSource for X509Source {
    /// The current SVID; `None` when there is none or it has expired.
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        self.inner.state.load().svid().cloned()
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
        Arc::clone(&self.inner.state.load().bundles)
    }
    fn generation(&self) -> u64 {
        *self.inner.bundle_generation.borrow()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.bundle_generation.subscribe()
    }
}

#[cfg(test)]
pub(super) fn test_inner(hint: Option<String>) -> X509Source {
    X509Source {
        inner: Arc::new(Inner {
            core: Core::new(),
            state: ArcSwap::from_pointee(X509Snapshot {
                svid: None,
                bundles: Arc::new(BundleSet::new()),
                generation: 0,
            }),
            svid_generation: watch::Sender::new(0),
            bundle_generation: watch::Sender::new(0),
            hint,
        }),
    }
}

#[cfg(test)]
impl X509Source {
    /// Applies an update as the task would.
    pub(super) fn apply_for_test(&self, ctx: X509Context) {
        self.inner.apply(ctx);
    }

    /// Reports `Ready`, as the task does after an update.
    pub(super) fn mark_ready_for_test(&self) {
        self.inner.core.health.send_replace(SourceHealth::Ready);
    }
}
