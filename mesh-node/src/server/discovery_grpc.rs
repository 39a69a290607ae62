//! The gRPC face of the service registry, on the node API's port. Callers
//! present an X509-SVID: a workload registers its own endpoints, an agent
//! those of its node's workloads.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use spiffe_core::{ConnectionFacts, SpiffeId};
use tonic::{Request, Response, Status};

use super::service::NodeService;
use crate::discovery::{Discovery, DiscoveryError, ServiceKey};
use crate::node_api::{endpoint_from_proto, endpoint_to_proto};
use crate::proto::{self, discovery_server};

/// Services one watch may name, at most.
const MAX_WATCHED: usize = 256;

#[derive(Debug, Clone)]
pub(crate) struct DiscoveryGrpc {
    pub(crate) service: Arc<NodeService>,
}

fn caller<T>(req: &Request<T>) -> Result<SpiffeId, Status> {
    req.extensions()
        .get::<ConnectionFacts>()
        .and_then(ConnectionFacts::peer)
        .map(|p| p.spiffe_id().clone())
        .ok_or_else(|| {
            Status::unauthenticated("discovery needs an X509-SVID as client certificate")
        })
}

pub(crate) fn status(e: DiscoveryError) -> Status {
    match e {
        DiscoveryError::NotOwnIdentity { .. } => Status::permission_denied(e.to_string()),
        DiscoveryError::UnknownLease(_) => Status::not_found(e.to_string()),
        DiscoveryError::Full => Status::resource_exhausted(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

fn lease(id: String, ttl: Duration) -> Response<proto::Lease> {
    Response::new(proto::Lease {
        lease_id: id,
        ttl_seconds: ttl.as_secs(),
    })
}

type EndpointStream = Pin<Box<dyn Stream<Item = Result<proto::EndpointSet, Status>> + Send>>;

#[tonic::async_trait]
impl discovery_server::Discovery for DiscoveryGrpc {
    async fn register(
        &self,
        req: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let endpoint = endpoint_from_proto(
            r.endpoint
                .ok_or_else(|| Status::invalid_argument("no endpoint"))?,
        )
        .map_err(Status::invalid_argument)?;
        if !self.service.may_register(&who, &endpoint.spiffe_id) {
            return Err(status(DiscoveryError::NotOwnIdentity {
                caller: who,
                endpoint: endpoint.spiffe_id,
            }));
        }
        let (id, ttl) = self
            .service
            .services()
            .register(&who, endpoint, Duration::from_secs(r.ttl_seconds))
            .map_err(status)?;
        Ok(lease(id, ttl))
    }

    async fn renew(
        &self,
        req: Request<proto::RenewRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let who = caller(&req)?;
        let id = req.into_inner().lease_id;
        let ttl = self
            .service
            .services()
            .renew(&who, &id, crate::discovery::MAX_LEASE)
            .map_err(status)?;
        Ok(lease(id, ttl))
    }

    async fn deregister(
        &self,
        req: Request<proto::RenewRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        let who = caller(&req)?;
        let id = req.into_inner().lease_id;
        self.service
            .services()
            .deregister(&who, &id)
            .map_err(status)?;
        Ok(lease(id, Duration::ZERO))
    }

    type WatchStream = EndpointStream;

    async fn watch(
        &self,
        req: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        caller(&req)?;
        let services: Vec<ServiceKey> = req
            .into_inner()
            .services
            .into_iter()
            .take(MAX_WATCHED)
            .map(|k| ServiceKey {
                service: k.service,
                namespace: k.namespace,
            })
            .collect();
        if services.is_empty() {
            return Err(Status::invalid_argument("watch at least one service"));
        }
        let stream = self.service.services().watch(services).map(|r| {
            r.map(|set| proto::EndpointSet {
                revision: set.revision,
                endpoints: set.endpoints.iter().map(endpoint_to_proto).collect(),
            })
            .map_err(status)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
