//! The five RPCs: header check, attestation, entitlement, responses.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::Stream;
use spiffe_core::{JwtSvid, SpiffeId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::conn::{ActiveRpc, Connection};
use super::render;
use super::share::{CallerKey, Share, Shares};
use crate::Selectors;
use crate::attest::Attestor;
use crate::proto;
use crate::proto::spiffe_workload_api_server::SpiffeWorkloadApi;
use crate::provider::{IdentityProvider, WorkloadIdentity};

/// The security header every request carries (EP-3).
pub(crate) const SECURITY_HEADER: &str = "workload.spiffe.io";

type WatchStream<M> = Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>;

pub(crate) struct Shared {
    pub(crate) provider: Arc<dyn IdentityProvider>,
    pub(crate) attestor: Arc<dyn Attestor>,
    pub(crate) streams: Arc<Semaphore>,
    pub(crate) shares: Shares,
    /// Becomes `true` when the server shuts down: open streams end with
    /// `Unavailable` so the graceful shutdown can complete.
    pub(crate) stopping: watch::Receiver<bool>,
}

#[derive(Clone)]
pub(crate) struct WorkloadService(pub(crate) Arc<Shared>);

/// EP-3: exactly one value, equal to `true`.
fn check_header(meta: &MetadataMap) -> Result<(), Status> {
    let mut values = meta.get_all(SECURITY_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if v.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

fn no_identity() -> Status {
    Status::permission_denied("no identity issued")
}

/// What one RPC holds while it runs: the caller's selectors (found when
/// the connection was accepted) and its mark on the connection's activity.
struct Attested {
    selectors: Selectors,
    key: CallerKey,
    active: ActiveRpc,
}

impl WorkloadService {
    /// The selectors the connection was attested with at accept time.
    async fn attest<T>(&self, request: &Request<T>) -> Result<Attested, Status> {
        check_header(request.metadata())?;
        let conn = request
            .extensions()
            .get::<Connection>()
            .ok_or_else(|| Status::unavailable("workload attestation failed"))?;
        let active = conn.activity.begin();
        match conn.selectors().await {
            Some(Ok(selectors)) => Ok(Attested {
                selectors,
                key: CallerKey::from(&conn.caller),
                active,
            }),
            Some(Err(_)) | None => Err(Status::unavailable("workload attestation failed")),
        }
    }

    fn permit(&self, key: CallerKey) -> Result<(OwnedSemaphorePermit, Share), Status> {
        let share = self
            .0
            .shares
            .acquire(key)
            .ok_or_else(|| Status::unavailable("too many open streams for this caller"))?;
        let permit = Arc::clone(&self.0.streams)
            .try_acquire_owned()
            .map_err(|_| Status::unavailable("too many open streams"))?;
        Ok((permit, share))
    }

    /// A stream that sends the caller's rendered state at once (WL-5) and
    /// again whenever it changes (WL-4, WL-6); `PermissionDenied` and the
    /// end of the stream once the caller has no identity left (WL-11).
    ///
    /// The stream is pulled by the transport: a slow client holds no queue,
    /// it simply sees the newest state when it reads next.
    fn watch<M>(
        &self,
        attested: Attested,
        render: fn(&WorkloadIdentity) -> Option<M>,
    ) -> Result<WatchStream<M>, Status>
    where
        M: PartialEq + Clone + Send + 'static,
    {
        let Attested {
            selectors,
            key,
            active,
        } = attested;
        let permit = self.permit(key)?;
        let mut changes = self.0.provider.subscribe();
        changes.borrow_and_update();
        let first = render(&self.0.provider.identity(&selectors)).ok_or_else(no_identity)?;
        struct St<M> {
            shared: Arc<Shared>,
            selectors: Selectors,
            changes: watch::Receiver<u64>,
            stopping: watch::Receiver<bool>,
            last: Option<M>,
            first: Option<M>,
            done: bool,
            _permit: (OwnedSemaphorePermit, Share),
            _active: ActiveRpc,
        }
        let st = St {
            stopping: self.0.stopping.clone(),
            shared: Arc::clone(&self.0),
            selectors,
            changes,
            last: None,
            first: Some(first),
            done: false,
            _permit: permit,
            _active: active,
        };
        let stream = futures_util::stream::unfold(st, move |mut st| async move {
            if st.done {
                return None;
            }
            if let Some(first) = st.first.take() {
                st.last = Some(first.clone());
                return Some((Ok(first), st));
            }
            loop {
                let stopping = tokio::select! {
                    changed = st.changes.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                        false
                    }
                    _ = st.stopping.wait_for(|s| *s) => true,
                };
                if stopping {
                    st.done = true;
                    return Some((Err(Status::unavailable("server is shutting down")), st));
                }
                let identity = st.shared.provider.identity(&st.selectors);
                match render(&identity) {
                    None => {
                        st.done = true;
                        return Some((Err(no_identity()), st));
                    }
                    Some(msg) if st.last.as_ref() == Some(&msg) => continue,
                    Some(msg) => {
                        st.last = Some(msg.clone());
                        return Some((Ok(msg), st));
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

fn with_identity<M>(f: fn(&WorkloadIdentity) -> M) -> impl Fn(&WorkloadIdentity) -> Option<M> {
    move |id| (!render::usable_svids(id).is_empty()).then(|| f(id))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadService {
    type FetchX509SVIDStream = WatchStream<proto::X509svidResponse>;
    type FetchX509BundlesStream = WatchStream<proto::X509BundlesResponse>;
    type FetchJWTBundlesStream = WatchStream<proto::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<proto::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let attested = self.attest(&request).await?;
        self.watch(attested, render::x509_svid_response)
            .map(Response::new)
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<proto::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let attested = self.attest(&request).await?;
        fn r(id: &WorkloadIdentity) -> Option<proto::X509BundlesResponse> {
            with_identity(render::x509_bundles_response)(id)
        }
        self.watch(attested, r).map(Response::new)
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<proto::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let attested = self.attest(&request).await?;
        fn r(id: &WorkloadIdentity) -> Option<proto::JwtBundlesResponse> {
            with_identity(render::jwt_bundles_response)(id)
        }
        self.watch(attested, r).map(Response::new)
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<proto::JwtsvidRequest>,
    ) -> Result<Response<proto::JwtsvidResponse>, Status> {
        check_header(request.metadata())?;
        let req = request.get_ref();
        if req.audience.is_empty() || req.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let wanted = if req.spiffe_id.is_empty() {
            None
        } else {
            Some(req.spiffe_id.parse::<SpiffeId>().map_err(|e| {
                Status::invalid_argument(format!("invalid requested SPIFFE ID: {e}"))
            })?)
        };
        let audience = req.audience.clone();
        let attested = self.attest(&request).await?;
        let identity = self.0.provider.identity(&attested.selectors);
        let mut seen = HashSet::new();
        let mut hints = HashSet::new();
        let mut svids = Vec::new();
        for issued in &identity.svids {
            let id = issued.svid.spiffe_id();
            if wanted.as_ref().is_some_and(|w| w != id) || !seen.insert(id.clone()) {
                continue;
            }
            // WL-9: a non-empty hint appears once per response; the first wins.
            if let Some(h) = issued.hint.as_deref().filter(|h| !h.is_empty())
                && !hints.insert(h)
            {
                continue;
            }
            let token = self
                .0
                .provider
                .mint_jwt_svid(id, &audience)
                .await
                .map_err(|e| Status::unavailable(format!("could not mint JWT-SVID: {e}")))?;
            svids.push(proto::Jwtsvid {
                spiffe_id: id.to_string(),
                svid: token,
                hint: issued.hint.clone().unwrap_or_default(),
            });
        }
        if svids.is_empty() {
            return Err(no_identity());
        }
        Ok(Response::new(proto::JwtsvidResponse { svids }))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<proto::ValidateJwtsvidRequest>,
    ) -> Result<Response<proto::ValidateJwtsvidResponse>, Status> {
        check_header(request.metadata())?;
        let req = request.get_ref();
        if req.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let attested = self.attest(&request).await?;
        let identity = self.0.provider.identity(&attested.selectors);
        if identity.is_empty() {
            return Err(no_identity());
        }
        let req = request.get_ref();
        let svid = JwtSvid::validate(
            &req.svid,
            &*identity.bundles,
            &req.audience,
            SystemTime::now(),
        )
        .map_err(|e| Status::invalid_argument(format!("invalid JWT-SVID: {e}")))?;
        Ok(Response::new(proto::ValidateJwtsvidResponse {
            spiffe_id: svid.spiffe_id().to_string(),
            claims: Some(render::claims_struct(svid.claims())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ep_3_header_must_be_exactly_one_true() {
        let mut m = MetadataMap::new();
        assert_eq!(
            check_header(&m).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        m.insert(SECURITY_HEADER, "True".parse().unwrap());
        assert_eq!(
            check_header(&m).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        m.insert(SECURITY_HEADER, "true".parse().unwrap());
        assert!(check_header(&m).is_ok());
        m.append(SECURITY_HEADER, "true".parse().unwrap());
        assert_eq!(
            check_header(&m).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
