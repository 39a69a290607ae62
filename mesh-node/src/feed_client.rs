//! [`FeedClient`]: what a sidecar uses to read its node agent's feed
//! socket: the policy set in force, the endpoints of the services it calls,
//! and registration of the endpoints it serves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use hyper_util::rt::TokioIo;
use tonic::transport::Channel;

use crate::discovery::{Discovery, DiscoveryError, Endpoint, EndpointSet, ServiceKey};
use crate::node_api::{GrpcDiscovery, NodeApiError, policy_from_proto};
use crate::policy_feed::PolicyBundle;
use crate::proto::{self, policies_client::PoliciesClient};

/// A client of an agent's feed socket. Connects lazily.
#[derive(Debug, Clone)]
pub struct FeedClient {
    channel: Channel,
    discovery: GrpcDiscovery,
}

impl FeedClient {
    /// A client of the feed socket at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path: PathBuf = path.as_ref().to_owned();
        let connect = tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        });
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(connect);
        FeedClient {
            discovery: GrpcDiscovery::new(channel.clone()),
            channel,
        }
    }

    /// The policy set in force at once, then each new one.
    pub async fn watch_policies(
        &self,
    ) -> Result<BoxStream<'static, Result<PolicyBundle, NodeApiError>>, NodeApiError> {
        let stream = PoliciesClient::new(self.channel.clone())
            .watch(proto::PolicyWatchRequest {})
            .await
            .map_err(crate::node_api::grpc_status_to_error)?
            .into_inner();
        Ok(stream
            .map(|r| {
                r.map(policy_from_proto)
                    .map_err(crate::node_api::grpc_status_to_error)
            })
            .boxed())
    }

    /// Registers an endpoint this workload serves; the agent checks that
    /// the workload holds an SVID for the endpoint's SPIFFE ID.
    pub async fn register(
        &self,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Result<(String, Duration), NodeApiError> {
        self.discovery.register(endpoint, ttl).await
    }

    /// Extends a lease.
    pub async fn renew(&self, lease: &str) -> Result<Duration, NodeApiError> {
        self.discovery.renew(lease).await
    }

    /// Ends a lease.
    pub async fn deregister(&self, lease: &str) -> Result<(), NodeApiError> {
        self.discovery.deregister(lease).await
    }
}

impl Discovery for FeedClient {
    fn watch(
        &self,
        services: Vec<ServiceKey>,
    ) -> BoxStream<'static, Result<EndpointSet, DiscoveryError>> {
        self.discovery.watch(services)
    }
}
