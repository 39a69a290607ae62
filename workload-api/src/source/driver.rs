//! The reconnect loop every source shares.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use tokio::sync::watch;

use super::{SourceHealth, SourceOptions};
use crate::{ClientError, EndpointAddress, StatusCode, WatchStream, WorkloadApiClient};

/// The state every source keeps besides its material.
pub(super) struct Core {
    pub(super) health: watch::Sender<SourceHealth>,
    pub(super) discarded: AtomicU64,
    /// Why the last session ended, for the errors of
    /// [`X509Source::connect`](super::X509Source::connect).
    last_error: Mutex<Option<String>>,
}

impl Core {
    pub(super) fn new() -> Self {
        Core {
            health: watch::Sender::new(SourceHealth::Connecting),
            discarded: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub(super) fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }

    /// Why the last session ended; `None` before the first one ended.
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_last_error(&self, error: &ClientError) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(spiffe_core::error_chain(error));
    }
}

/// One kind of watch RPC and what to do with its updates.
pub(super) trait Feed: Send + Sync + 'static {
    /// A full state from the stream.
    type Update: Send + 'static;

    /// Opens the watch stream.
    fn open(
        client: WorkloadApiClient,
    ) -> impl Future<Output = Result<WatchStream<Self::Update>, ClientError>> + Send;

    /// Publishes a good update.
    fn apply(&self, update: Self::Update);

    /// Drops all material (PermissionDenied, WL-11).
    fn withdraw(&self);

    /// Health and counters.
    fn core(&self) -> &Core;
}

/// The background work of a source: a future to spawn or await. It ends
/// with `Ok(())` when every handle of the source is dropped, or with the
/// fatal error (`InvalidArgument`, `Unimplemented`).
pub struct SourceTask {
    inner: Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>,
}

impl std::fmt::Debug for SourceTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTask").finish_non_exhaustive()
    }
}

impl Future for SourceTask {
    type Output = Result<(), ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// The task for `feed`; it holds only a weak reference, so dropping the
/// source's handles ends it.
pub(super) fn task<F: Feed>(
    feed: &Arc<F>,
    address: EndpointAddress,
    options: &SourceOptions,
) -> SourceTask {
    let health = feed.core().health.subscribe();
    SourceTask {
        inner: Box::pin(run(Arc::downgrade(feed), health, address, options.clone())),
    }
}

enum Session {
    /// At least one good update arrived before the stream ended.
    Delivered(ClientError),
    /// Nothing good arrived.
    Failed(ClientError),
}

/// One connection: connect and open the stream within the client's
/// deadlines, take the first update within the RPC deadline (a server that
/// accepts but never answers is a failure, not a wait), then follow the
/// stream; client keepalive ends it if the server stops answering.
async fn session<F: Feed>(
    weak: &Weak<F>,
    address: &EndpointAddress,
    options: &SourceOptions,
) -> Session {
    let client = match WorkloadApiClient::connect_with(address, options.client).await {
        Ok(c) => c,
        Err(e) => return Session::Failed(e),
    };
    let first_within = client.rpc_timeout();
    let mut stream = match F::open(client).await {
        Ok(s) => s,
        Err(e) => return Session::Failed(e),
    };
    let mut delivered = false;
    let end = |e, delivered| {
        if delivered {
            Session::Delivered(e)
        } else {
            Session::Failed(e)
        }
    };
    loop {
        let item = if delivered {
            stream.next().await
        } else {
            stream.next_within(first_within).await
        };
        let Some(feed) = weak.upgrade() else {
            return Session::Delivered(ClientError::StreamClosed);
        };
        match item {
            Some(Ok(update)) => {
                feed.apply(update);
                feed.core().health.send_replace(SourceHealth::Ready);
                delivered = true;
            }
            Some(Err(ClientError::Malformed(e))) => {
                tracing::warn!(error = %e, "discarding a malformed Workload API update");
                feed.core().discarded.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => return end(e, delivered),
            None => return end(ClientError::StreamClosed, delivered),
        }
    }
}

async fn run<F: Feed>(
    weak: Weak<F>,
    mut health: watch::Receiver<SourceHealth>,
    address: EndpointAddress,
    options: SourceOptions,
) -> Result<(), ClientError> {
    let backoff = options.backoff;
    let mut failures = 0u32;
    loop {
        // The health sender lives in the source: once every handle is
        // dropped, `closed` completes and the task ends.
        let outcome = tokio::select! {
            s = session(&weak, &address, &options) => s,
            _ = closed(&mut health) => return Ok(()),
        };
        let Some(feed) = weak.upgrade() else {
            return Ok(());
        };
        let error = match outcome {
            Session::Delivered(e) => {
                failures = 0;
                e
            }
            Session::Failed(e) => e,
        };
        feed.core().set_last_error(&error);
        if error.is_fatal() {
            let code = error.code().unwrap_or(StatusCode::Other);
            feed.core()
                .health
                .send_replace(SourceHealth::Failed { code });
            return Err(error);
        }
        failures = failures.saturating_add(1);
        if error.code() == Some(StatusCode::PermissionDenied) {
            feed.withdraw();
            feed.core().health.send_replace(SourceHealth::Denied);
        } else {
            feed.core()
                .health
                .send_replace(SourceHealth::Reconnecting { failures });
        }
        drop(feed);
        tracing::debug!(error = %error, failures, "Workload API stream ended; retrying");
        tokio::select! {
            _ = tokio::time::sleep(backoff.delay(failures)) => {}
            _ = closed(&mut health) => return Ok(()),
        }
    }
}

async fn closed(health: &mut watch::Receiver<SourceHealth>) {
    while health.changed().await.is_ok() {}
}
