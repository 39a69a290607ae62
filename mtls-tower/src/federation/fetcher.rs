//! [`Fetcher`]: one federation relationship's polling, status and early
//! refresh.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use spiffe_core::{SpiffeBundle, TrustDomain};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::bundles::FederatedBundles;
use super::error::{FetchError, FetchErrorKind};
use super::fetch::EndpointClient;
use super::relationship::{BundleUrl, FetchOptions};
use super::validate;

/// What a [`Fetcher`] has done so far: readable at any time, and
/// observable with [`Fetcher::subscribe`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchStatus {
    /// The relationship's trust domain.
    pub trust_domain: TrustDomain,
    /// The configured URL (redirect targets are never remembered).
    pub url: BundleUrl,
    /// Fetches whose bundle was accepted.
    pub accepted: u64,
    /// Failed or refused fetches, per reason.
    pub refused: BTreeMap<FetchErrorKind, u64>,
    /// The last failure or refusal, if the last fetch was not accepted.
    pub last_error: Option<Arc<FetchError>>,
    /// When a bundle was last accepted.
    pub last_accepted: Option<SystemTime>,
    /// The stored bundle's `spiffe_sequence`.
    pub sequence: Option<u64>,
    /// The interval until the next poll, from the stored bundle's hint.
    pub interval: Duration,
    /// Whether the relationship was removed (the fetcher has stopped).
    pub removed: bool,
}

impl FetchStatus {
    /// How many fetches failed or were refused for `kind`.
    pub fn refused(&self, kind: FetchErrorKind) -> u64 {
        self.refused.get(&kind).copied().unwrap_or(0)
    }

    /// How many fetches failed or were refused, for any reason.
    pub fn failures(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// The fetcher of one federation relationship, made by
/// [`crate::federation::Federation::trust`]. Cheap to clone: clones share
/// one relationship.
///
/// [`Fetcher::run`] polls until the relationship is removed; every
/// accepted bundle replaces the relationship's bundle in the federation's
/// [`FederatedBundles`], every failure is logged with its reason, counted
/// in [`FetchStatus::refused`] and leaves the last good bundle in place.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    trust_domain: TrustDomain,
    url: BundleUrl,
    options: FetchOptions,
    client: EndpointClient,
    bundles: FederatedBundles,
    status: watch::Sender<FetchStatus>,
    nudge: Notify,
    last_nudge: Mutex<Option<Instant>>,
    /// Serializes fetches, and stores against removal: set under this
    /// lock, a removed relationship never stores again.
    fetching: tokio::sync::Mutex<()>,
    removed: Mutex<bool>,
    stop: watch::Sender<bool>,
}

impl Fetcher {
    pub(crate) fn new(
        trust_domain: TrustDomain,
        url: BundleUrl,
        options: FetchOptions,
        client: EndpointClient,
        bundles: FederatedBundles,
    ) -> Self {
        let stored = bundles.federated(&trust_domain);
        let status = FetchStatus {
            trust_domain: trust_domain.clone(),
            url: url.clone(),
            accepted: 0,
            refused: BTreeMap::new(),
            last_error: None,
            last_accepted: None,
            sequence: stored.as_ref().and_then(SpiffeBundle::sequence),
            interval: options.interval(stored.as_ref().and_then(SpiffeBundle::refresh_hint)),
            removed: false,
        };
        Fetcher {
            inner: Arc::new(Inner {
                trust_domain,
                url,
                options,
                client,
                bundles,
                status: watch::Sender::new(status),
                nudge: Notify::new(),
                last_nudge: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                removed: Mutex::new(false),
                stop: watch::Sender::new(false),
            }),
        }
    }

    /// The relationship's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.inner.trust_domain
    }

    /// The current status.
    pub fn status(&self) -> FetchStatus {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<FetchStatus> {
        self.inner.status.subscribe()
    }

    /// Polls the endpoint until the relationship is removed: fetches at
    /// once, then at the interval the stored bundle's refresh hint gives
    /// (see [`FetchOptions`]), and early when [`Fetcher::refresh_now`]
    /// asks. A failure waits for the next interval. Spawn it.
    pub async fn run(self) {
        let mut stop = self.inner.stop.subscribe();
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = self.fetch() => {}
                _ = stop.changed() => return,
            }
            let interval = self.inner.status.borrow().interval;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.inner.nudge.notified() => {
                    tracing::info!(trust_domain = %self.inner.trust_domain, "refetching bundle early, as asked");
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Asks [`Fetcher::run`] to fetch now rather than at the next interval;
    /// meant for when a peer of this trust domain presented a chain the
    /// stored bundle does not anchor (it may have rotated its roots; see
    /// [`crate::federation::Federation::unknown_authority_hook`]).
    ///
    /// Rate-limited: at most one early fetch per
    /// [`FetchOptions::refresh_now_min_interval`] (default 10 s), so a
    /// stream of bad handshakes cannot turn into a stream of fetches.
    /// Returns whether this call was accepted.
    pub fn refresh_now(&self) -> bool {
        let now = Instant::now();
        let mut last = self
            .inner
            .last_nudge
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = *last
            && now.saturating_duration_since(t) < self.inner.options.nudge_min_interval
        {
            return false;
        }
        *last = Some(now);
        self.inner.nudge.notify_one();
        true
    }

    /// Fetches once, now, and stores the bundle if it is accepted;
    /// returns the accepted bundle or why it was not. Fetches of one
    /// relationship never overlap. Once the relationship is removed,
    /// nothing is stored any more.
    pub async fn fetch(&self) -> Result<SpiffeBundle, Arc<FetchError>> {
        let _one_at_a_time = self.inner.fetching.lock().await;
        let td = &self.inner.trust_domain;
        let result = match self
            .inner
            .client
            .fetch(&self.inner.url, &self.inner.options)
            .await
        {
            Ok(body) => validate::check(td, &body, self.inner.bundles.federated(td).as_ref()),
            Err(e) => Err(e),
        };
        match result {
            Ok(bundle) => {
                {
                    let removed = self
                        .inner
                        .removed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if !*removed {
                        self.inner.bundles.store(bundle.clone());
                    }
                }
                tracing::info!(
                    trust_domain = %td,
                    url = %self.inner.url,
                    sequence = ?bundle.sequence(),
                    x509_authorities = bundle.x509().authorities().len(),
                    jwt_keys = bundle.jwt().keys().count(),
                    "fetched federated bundle"
                );
                let interval = self.inner.options.interval(bundle.refresh_hint());
                self.inner.status.send_modify(|s| {
                    s.accepted += 1;
                    s.last_error = None;
                    s.last_accepted = Some(SystemTime::now());
                    s.sequence = bundle.sequence();
                    s.interval = interval;
                });
                Ok(bundle)
            }
            Err(e) => {
                let e = Arc::new(e);
                tracing::warn!(
                    trust_domain = %td,
                    url = %self.inner.url,
                    reason = ?e.kind(),
                    error = %e,
                    "bundle fetch failed or refused; keeping the last good bundle"
                );
                self.inner.status.send_modify(|s| {
                    *s.refused.entry(e.kind()).or_insert(0) += 1;
                    s.last_error = Some(e.clone());
                });
                Err(e)
            }
        }
    }

    /// Stops polling and removes the stored bundle (FED-10).
    pub(crate) fn remove(&self) {
        {
            let mut removed = self
                .inner
                .removed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *removed = true;
            self.inner.bundles.remove(&self.inner.trust_domain);
        }
        self.inner.stop.send_replace(true);
        self.inner.status.send_modify(|s| s.removed = true);
    }
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("trust_domain", &self.inner.trust_domain)
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}
