//! The agent's feed socket: what sidecars on the node need besides their
//! SVID, on one local Unix socket. It relays the policy set the server
//! distributes and the server's service registry: watches of the services
//! a sidecar calls, and registrations of the endpoints it serves. A caller
//! is attested from its peer credentials when it connects, and may
//! register only endpoints whose SPIFFE ID one of its own SVIDs carries.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use spiffe_core::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};
use workload_api::{Attestor, Caller, IdentityProvider, Selectors, UnixAttestor, UnixPeer};

use super::AgentCache;
use crate::node_api::{GrpcNodeApi, endpoint_from_proto, policy_to_proto};
use crate::policy_feed::PolicyBundle;
use crate::proto::{self, discovery_server, policies_server};

/// Who connected to the feed socket: the selectors attested at accept.
#[derive(Debug, Clone)]
pub(crate) struct FeedCaller(Arc<Selectors>);

pub(crate) struct FeedConn {
    stream: UnixStream,
    caller: FeedCaller,
}

impl tonic::transport::server::Connected for FeedConn {
    type ConnectInfo = FeedCaller;
    fn connect_info(&self) -> FeedCaller {
        self.caller.clone()
    }
}

impl AsyncRead for FeedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for FeedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Accepts connections and attests each once.
fn incoming(
    listener: UnixListener,
    attestor: Arc<UnixAttestor>,
) -> impl Stream<Item = Result<FeedConn, io::Error>> {
    let (tx, rx) = mpsc::channel::<FeedConn>(16);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(error) => {
                    tracing::warn!(%error, "feed socket accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let (tx, attestor) = (tx.clone(), attestor.clone());
            tokio::spawn(async move {
                let Ok(cred) = stream.peer_cred() else { return };
                let caller = Caller::Unix(UnixPeer {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid(),
                });
                let attested = tokio::task::spawn_blocking(move || attestor.attest(&caller)).await;
                let selectors = match attested {
                    Ok(Ok(s)) => s,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "feed caller attestation failed");
                        Selectors::new()
                    }
                    Err(_) => return,
                };
                let _ = tx
                    .send(FeedConn {
                        stream,
                        caller: FeedCaller(Arc::new(selectors)),
                    })
                    .await;
            });
        }
    });
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) },
    )
}

/// The SPIFFE IDs the caller holds now.
fn identities<T>(cache: &AgentCache, req: &Request<T>) -> Result<Vec<SpiffeId>, Status> {
    let caller = req
        .extensions()
        .get::<FeedCaller>()
        .ok_or_else(|| Status::internal("no caller facts"))?;
    let ids: Vec<SpiffeId> = cache
        .identity(&caller.0)
        .svids
        .iter()
        .map(|s| s.svid.spiffe_id().clone())
        .collect();
    if ids.is_empty() {
        return Err(Status::permission_denied(
            "this caller has no identity on this node",
        ));
    }
    Ok(ids)
}

#[derive(Clone)]
pub(crate) struct PoliciesFeed {
    pub(crate) cache: Arc<AgentCache>,
    pub(crate) policies: watch::Receiver<Arc<PolicyBundle>>,
}

type PolicyStream = Pin<Box<dyn Stream<Item = Result<proto::PolicySet, Status>> + Send>>;

#[tonic::async_trait]
impl policies_server::Policies for PoliciesFeed {
    type WatchStream = PolicyStream;

    async fn watch(
        &self,
        req: Request<proto::PolicyWatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        identities(&self.cache, &req)?;
        let rx = self.policies.clone();
        let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first {
                rx.changed().await.ok()?;
            }
            let set = policy_to_proto(&rx.borrow_and_update());
            Some((Ok(set), (rx, false)))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[derive(Clone)]
pub(crate) struct DiscoveryRelay {
    pub(crate) cache: Arc<AgentCache>,
    pub(crate) node: Arc<GrpcNodeApi>,
    /// Which identity each relayed lease was taken for.
    pub(crate) leases: Arc<Mutex<HashMap<String, SpiffeId>>>,
}

fn relayed(e: crate::node_api::NodeApiError) -> Status {
    use crate::node_api::NodeApiError as E;
    match e {
        E::PermissionDenied(m) => Status::permission_denied(m),
        E::InvalidArgument(m) => Status::not_found(m),
        E::Unavailable(m) => Status::unavailable(m),
        other => Status::internal(other.to_string()),
    }
}

impl DiscoveryRelay {
    fn owns(&self, ids: &[SpiffeId], lease: &str) -> Result<(), Status> {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        match leases.get(lease) {
            Some(id) if ids.contains(id) => Ok(()),
            _ => Err(Status::not_found(format!(
                "no lease {lease} of this caller"
            ))),
        }
    }
}

#[tonic::async_trait]
impl discovery_server::Discovery for DiscoveryRelay {
    async fn register(
        &self,
        req: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let ids = identities(&self.cache, &req)?;
        let r = req.into_inner();
        let endpoint = endpoint_from_proto(
            r.endpoint
                .ok_or_else(|| Status::invalid_argument("no endpoint"))?,
        )
        .map_err(Status::invalid_argument)?;
        if !ids.contains(&endpoint.spiffe_id) {
            return Err(Status::permission_denied(format!(
                "this caller holds no SVID for {}",
                endpoint.spiffe_id
            )));
        }
        let id = endpoint.spiffe_id.clone();
        let (lease, ttl) = self
            .node
            .discovery()
            .register(&endpoint, Duration::from_secs(r.ttl_seconds))
            .await
            .map_err(relayed)?;
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(lease.clone(), id);
        Ok(Response::new(proto::Lease {
            lease_id: lease,
            ttl_seconds: ttl.as_secs(),
        }))
    }

    async fn renew(
        &self,
        req: Request<proto::RenewRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let ids = identities(&self.cache, &req)?;
        let lease = req.into_inner().lease_id;
        self.owns(&ids, &lease)?;
        let ttl = self.node.discovery().renew(&lease).await.map_err(relayed)?;
        Ok(Response::new(proto::Lease {
            lease_id: lease,
            ttl_seconds: ttl.as_secs(),
        }))
    }

    async fn deregister(
        &self,
        req: Request<proto::RenewRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let ids = identities(&self.cache, &req)?;
        let lease = req.into_inner().lease_id;
        self.owns(&ids, &lease)?;
        self.node
            .discovery()
            .deregister(&lease)
            .await
            .map_err(relayed)?;
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&lease);
        Ok(Response::new(proto::Lease {
            lease_id: lease,
            ttl_seconds: 0,
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::EndpointSet, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        identities(&self.cache, &req)?;
        let keys: Vec<crate::discovery::ServiceKey> = req
            .into_inner()
            .services
            .into_iter()
            .map(|k| crate::discovery::ServiceKey {
                service: k.service,
                namespace: k.namespace,
            })
            .collect();
        let upstream = self.node.discovery().watch_raw(&keys).await?;
        Ok(Response::new(Box::pin(upstream.map(|r| r))))
    }
}

/// Serves the feed on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: UnixListener,
    attestor: Arc<UnixAttestor>,
    policies: PoliciesFeed,
    discovery: DiscoveryRelay,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(policies_server::PoliciesServer::new(policies))
        .add_service(discovery_server::DiscoveryServer::new(discovery))
        .serve_with_incoming_shutdown(incoming(listener, attestor), shutdown)
        .await
}
