//! [`X509Source`]: a workload's SVID and bundles, kept current from the
//! Workload API.

mod backoff;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use arc_swap::{ArcSwap, ArcSwapOption};
use spiffe_core::{BundleSet, BundleSource, SvidSource, X509Svid};
use tokio::sync::watch;

pub use backoff::Backoff;

use crate::{ClientError, EndpointAddress, StatusCode, WorkloadApiClient, X509Context};

/// How an [`X509Source`] is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceHealth {
    /// No update received yet.
    Connecting,
    /// The last stream delivered an update and is open.
    Ready,
    /// The connection or stream failed; the last good material is kept and
    /// the task retries after a backoff.
    Reconnecting {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The server said `PermissionDenied`: the material was withdrawn; the
    /// task keeps retrying (the registration may still be propagating).
    Denied,
    /// The server gave an error that retrying cannot fix
    /// (`InvalidArgument`, `Unimplemented`); the task has ended.
    Failed {
        /// The status code.
        code: StatusCode,
    },
    /// Every handle of the source was dropped; the task has ended.
    Closed,
}

struct Inner {
    svid: ArcSwapOption<X509Svid>,
    bundles: ArcSwap<BundleSet>,
    svid_generation: watch::Sender<u64>,
    bundle_generation: watch::Sender<u64>,
    health: watch::Sender<SourceHealth>,
    discarded: AtomicU64,
    hint: Option<String>,
}

impl Inner {
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

    /// WL-11: a PermissionDenied means stop using the SVID and bundles.
    fn withdraw(&self) {
        if self.svid.swap(None).is_some() {
            self.svid_generation.send_modify(|g| *g += 1);
        }
        if !self.bundles.load().is_empty() {
            self.bundles.store(Arc::new(BundleSet::new()));
            self.bundle_generation.send_modify(|g| *g += 1);
        }
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

/// The background work of a source: a future to spawn or await. It ends
/// with `Ok(())` when the source's handles are all dropped, or with the
/// fatal error.
pub struct SourceTask {
    inner: Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>,
}

impl fmt::Debug for SourceTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceTask").finish_non_exhaustive()
    }
}

impl Future for SourceTask {
    type Output = Result<(), ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
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
            svid: ArcSwapOption::empty(),
            bundles: ArcSwap::from_pointee(BundleSet::new()),
            svid_generation: watch::Sender::new(0),
            bundle_generation: watch::Sender::new(0),
            health: watch::Sender::new(SourceHealth::Connecting),
            discarded: AtomicU64::new(0),
            hint,
        });
        let task = run(
            Arc::downgrade(&inner),
            inner.health.subscribe(),
            address,
            backoff,
        );
        (
            X509Source { inner },
            SourceTask {
                inner: Box::pin(task),
            },
        )
    }

    /// The current health.
    pub fn health(&self) -> SourceHealth {
        *self.inner.health.borrow()
    }

    /// A receiver that sees every health change.
    pub fn watch_health(&self) -> watch::Receiver<SourceHealth> {
        self.inner.health.subscribe()
    }

    /// How many malformed updates were discarded so far.
    pub fn discarded_updates(&self) -> u64 {
        self.inner.discarded.load(Ordering::Relaxed)
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

/// What one connection attempt ended with.
enum Session {
    /// At least one update arrived before the stream ended.
    Delivered(ClientError),
    /// Nothing arrived.
    Failed(ClientError),
}

async fn session(weak: &Weak<Inner>, address: &EndpointAddress) -> Session {
    let mut client = match WorkloadApiClient::connect(address).await {
        Ok(c) => c,
        Err(e) => return Session::Failed(e),
    };
    let mut stream = match client.watch_x509_context().await {
        Ok(s) => s,
        Err(e) => return Session::Failed(e),
    };
    let mut delivered = false;
    loop {
        let item = stream.next().await;
        let Some(inner) = weak.upgrade() else {
            return Session::Delivered(ClientError::StreamClosed);
        };
        match item {
            Some(Ok(ctx)) => {
                inner.apply(ctx);
                inner.health.send_replace(SourceHealth::Ready);
                delivered = true;
            }
            Some(Err(ClientError::Malformed(e))) => {
                tracing::warn!(error = %e, "discarding a malformed X509-SVID update");
                inner.discarded.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                return if delivered {
                    Session::Delivered(e)
                } else {
                    Session::Failed(e)
                };
            }
            None => {
                let e = ClientError::StreamClosed;
                return if delivered {
                    Session::Delivered(e)
                } else {
                    Session::Failed(e)
                };
            }
        }
    }
}

async fn run(
    weak: Weak<Inner>,
    mut health: watch::Receiver<SourceHealth>,
    address: EndpointAddress,
    backoff: Backoff,
) -> Result<(), ClientError> {
    let mut failures = 0u32;
    loop {
        // Ends the session as soon as the last handle is dropped (the
        // health sender lives in `Inner`).
        let outcome = tokio::select! {
            s = session(&weak, &address) => s,
            _ = closed(&mut health) => return Ok(()),
        };
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let error = match outcome {
            Session::Delivered(e) => {
                failures = 0;
                e
            }
            Session::Failed(e) => e,
        };
        if error.is_fatal() {
            let code = error.code().unwrap_or(StatusCode::Other);
            inner.health.send_replace(SourceHealth::Failed { code });
            return Err(error);
        }
        failures = failures.saturating_add(1);
        if error.code() == Some(StatusCode::PermissionDenied) {
            inner.withdraw();
            inner.health.send_replace(SourceHealth::Denied);
        } else {
            inner
                .health
                .send_replace(SourceHealth::Reconnecting { failures });
        }
        drop(inner);
        tracing::debug!(error = %error, failures, "Workload API stream ended; retrying");
        tokio::select! {
            _ = tokio::time::sleep(backoff.delay(failures)) => {}
            _ = closed(&mut health) => return Ok(()),
        }
    }
}

/// Completes when the health sender (owned by the handles) is gone.
async fn closed(health: &mut watch::Receiver<SourceHealth>) {
    while health.changed().await.is_ok() {}
}
