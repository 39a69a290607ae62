//! [`BundleEndpoint`]: the Tower service that publishes one trust domain's
//! bundle (FED-1, WEB-5, SPF-4).

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use spiffe_core::{BundleSource, SpiffeBundle, TrustDomain};

/// The refresh hint published when none is configured: 5 minutes, as the
/// SPIFFE federation standard suggests and SPIRE publishes.
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);

/// Where a [`BundleEndpoint`] reads the bundle it publishes: called on every
/// request, so it always answers with the current one.
///
/// Implemented for closures returning `Option<SpiffeBundle>`; use
/// [`BundleEndpoint::from_source`] for a [`BundleSource`].
pub trait CurrentBundle: Send + Sync + 'static {
    /// The bundle to publish now, or `None` when there is none yet.
    fn current_bundle(&self) -> Option<SpiffeBundle>;
}

impl<F> CurrentBundle for F
where
    F: Fn() -> Option<SpiffeBundle> + Send + Sync + 'static,
{
    fn current_bundle(&self) -> Option<SpiffeBundle> {
        self()
    }
}

/// The bundle of one trust domain of a source.
struct FromSource {
    source: Arc<dyn BundleSource>,
    trust_domain: TrustDomain,
}

impl CurrentBundle for FromSource {
    fn current_bundle(&self) -> Option<SpiffeBundle> {
        self.source.bundle_set().get(&self.trust_domain).cloned()
    }
}

/// The sequence numbers the endpoint assigned, for bundles without one.
#[derive(Default)]
struct Assigned {
    /// The last content published without a source sequence, and the
    /// sequence assigned to it.
    last: Option<(SpiffeBundle, u64)>,
}

/// A Tower service that answers `GET` with the current SPIFFE bundle of one
/// trust domain: the body is the bundle document, `Content-Type:
/// application/json`. Other methods get `405` with `Allow: GET`; a
/// configured path other than the request's gets `404`; no bundle yet gets
/// `503`. It never asks for client authentication (WEB-4, SPF-4).
///
/// The published bundle always carries `spiffe_sequence` and
/// `spiffe_refresh_hint` (BUN-4, BUN-5). A source bundle with a sequence is
/// published with it. For one without, the endpoint assigns one that grows
/// whenever the content changes: the first is the current Unix time in
/// seconds, each later one is the larger of that and the previous plus one,
/// so a restarted endpoint does not go back to a lower number (which
/// clients would refuse) as long as the clock does not go back. The
/// refresh hint is the configured one (default [`DEFAULT_REFRESH_HINT`]),
/// replacing the source's.
///
/// Use it with hyper (`hyper_util::service::TowerToHyperService`), axum
/// (`Router::route_service`), or [`crate::federation::serve`].
///
/// ```
/// use mtls_tower::federation::BundleEndpoint;
/// use spiffe_core::{BundleSet, MemoryBundleSource, SpiffeBundle};
/// let td: spiffe_core::TrustDomain = "example.org".parse()?;
/// let source = MemoryBundleSource::new(BundleSet::from_iter([SpiffeBundle::empty(td.clone())]));
/// let endpoint = BundleEndpoint::from_source(td, source)
///     .refresh_hint(std::time::Duration::from_secs(60))
///     .path("/bundle");
/// # Ok::<(), spiffe_core::IdError>(())
/// ```
#[derive(Clone)]
pub struct BundleEndpoint {
    bundle: Arc<dyn CurrentBundle>,
    refresh_hint: Duration,
    path: Option<Arc<str>>,
    assigned: Arc<Mutex<Assigned>>,
}

impl BundleEndpoint {
    /// Publishes what `bundle` returns at each request.
    pub fn new(bundle: impl CurrentBundle) -> Self {
        BundleEndpoint {
            bundle: Arc::new(bundle),
            refresh_hint: DEFAULT_REFRESH_HINT,
            path: None,
            assigned: Arc::default(),
        }
    }

    /// Publishes the bundle of `trust_domain` held by `source`.
    pub fn from_source(trust_domain: TrustDomain, source: impl BundleSource) -> Self {
        Self::new(FromSource {
            source: Arc::new(source),
            trust_domain,
        })
    }

    /// Sets the published `spiffe_refresh_hint` (whole seconds; at least one).
    pub fn refresh_hint(mut self, hint: Duration) -> Self {
        self.refresh_hint = hint.max(Duration::from_secs(1));
        self
    }

    /// Answers only on this path (`404` elsewhere); by default every path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into().into());
        self
    }

    /// The document published now, or `None` when there is no bundle.
    pub fn current_document(&self) -> Option<Vec<u8>> {
        let bundle = self.bundle.current_bundle()?;
        let bundle = match bundle.sequence() {
            Some(_) => bundle,
            None => {
                let seq = self.assign_sequence(&bundle);
                bundle.with_sequence(seq)
            }
        };
        Some(bundle.with_refresh_hint(self.refresh_hint).to_json())
    }

    fn assign_sequence(&self, bundle: &SpiffeBundle) -> u64 {
        let mut assigned = self.assigned.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let seq = match &assigned.last {
            Some((last, seq)) if last == bundle => return *seq,
            Some((_, seq)) => now.max(seq + 1),
            None => now,
        };
        assigned.last = Some((bundle.clone(), seq));
        seq
    }

    pub(crate) fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if let Some(path) = &self.path
            && req.uri().path() != &**path
        {
            return status(StatusCode::NOT_FOUND);
        }
        if req.method() != Method::GET {
            let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            return r;
        }
        match self.current_document() {
            None => status(StatusCode::SERVICE_UNAVAILABLE),
            Some(doc) => {
                let mut r = Response::new(Full::new(Bytes::from(doc)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("no-store"),
                );
                r
            }
        }
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

impl<B> tower::Service<Request<B>> for BundleEndpoint {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(&req)))
    }
}

impl fmt::Debug for BundleEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleEndpoint")
            .field("refresh_hint", &self.refresh_hint)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_sequence_grows_only_on_change() {
        let td: TrustDomain = "a.org".parse().unwrap();
        let current = Arc::new(Mutex::new(SpiffeBundle::empty(td.clone())));
        let c = current.clone();
        let ep = BundleEndpoint::new(move || Some(c.lock().unwrap().clone()));
        let seq = |ep: &BundleEndpoint| {
            let doc = ep.current_document().unwrap();
            SpiffeBundle::parse(td.clone(), &doc)
                .unwrap()
                .sequence()
                .unwrap()
        };
        let a = seq(&ep);
        assert_eq!(seq(&ep), a);
        *current.lock().unwrap() =
            SpiffeBundle::empty(td.clone()).with_refresh_hint(Duration::from_secs(7));
        let b = seq(&ep);
        assert!(b > a, "{b} > {a}");
    }
}
