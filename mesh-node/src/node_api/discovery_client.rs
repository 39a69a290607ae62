//! [`GrpcDiscovery`]: the server's service registry over gRPC, as an agent
//! (with its node SVID) or a workload (with its own SVID) calls it.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tonic::transport::Channel;

use super::grpc::status_to_error;
use super::{CALL_TIMEOUT, NodeApiError, endpoint_from_proto, endpoint_to_proto};
use crate::discovery::{Discovery, DiscoveryError, Endpoint, EndpointSet, ServiceKey};
use crate::proto::{self, discovery_client::DiscoveryClient};

/// The service registry over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcDiscovery {
    client: DiscoveryClient<Channel>,
}

fn timed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_TIMEOUT);
    r
}

impl GrpcDiscovery {
    /// A client over `channel` (which authenticates the caller).
    pub fn new(channel: Channel) -> Self {
        GrpcDiscovery {
            client: DiscoveryClient::new(channel),
        }
    }

    /// Registers `endpoint` for `ttl`; returns the lease id and granted TTL.
    pub async fn register(
        &self,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Result<(String, Duration), NodeApiError> {
        let lease = self
            .client
            .clone()
            .register(timed(proto::RegisterRequest {
                endpoint: Some(endpoint_to_proto(endpoint)),
                ttl_seconds: ttl.as_secs(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok((lease.lease_id, Duration::from_secs(lease.ttl_seconds)))
    }

    /// Extends lease `id`.
    pub async fn renew(&self, id: &str) -> Result<Duration, NodeApiError> {
        let lease = self
            .client
            .clone()
            .renew(timed(proto::RenewRequest {
                lease_id: id.to_owned(),
            }))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(Duration::from_secs(lease.ttl_seconds))
    }

    /// Ends lease `id`.
    pub async fn deregister(&self, id: &str) -> Result<(), NodeApiError> {
        self.client
            .clone()
            .deregister(timed(proto::RenewRequest {
                lease_id: id.to_owned(),
            }))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// The raw watch stream.
    pub(crate) async fn watch_raw(
        &self,
        services: &[ServiceKey],
    ) -> Result<tonic::Streaming<proto::EndpointSet>, tonic::Status> {
        let req = proto::WatchRequest {
            services: services
                .iter()
                .map(|k| proto::ServiceKey {
                    service: k.service.clone(),
                    namespace: k.namespace.clone(),
                })
                .collect(),
        };
        Ok(self.client.clone().watch(req).await?.into_inner())
    }
}

/// Decodes one wire endpoint set.
fn set_from_proto(p: proto::EndpointSet) -> Result<EndpointSet, DiscoveryError> {
    let endpoints = p
        .endpoints
        .into_iter()
        .map(endpoint_from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| DiscoveryError::Invalid("endpoint from the server"))?;
    Ok(EndpointSet {
        revision: p.revision,
        endpoints,
    })
}

impl Discovery for GrpcDiscovery {
    fn watch(
        &self,
        services: Vec<ServiceKey>,
    ) -> BoxStream<'static, Result<EndpointSet, DiscoveryError>> {
        let this = self.clone();
        let stream = futures_util::stream::once(async move { this.watch_raw(&services).await })
            .flat_map(|opened| match opened {
                Ok(s) => s
                    .map(|item| match item {
                        Ok(set) => set_from_proto(set),
                        Err(e) => Err(DiscoveryError::Unavailable(e.message().to_owned())),
                    })
                    .boxed(),
                Err(e) => futures_util::stream::once(async move {
                    Err(DiscoveryError::Unavailable(e.message().to_owned()))
                })
                .boxed(),
            });
        stream.boxed()
    }
}
