//! [`GrpcNodeApi`]: the node API over gRPC and TLS, as an agent calls it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use mtls_tower::{ClientConfigBuilder, MtlsConnector, TrustPolicy, authorizer};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use spiffe_core::{
    BundleSource, EntryId, MemorySvidSource, SpiffeBundle, SpiffeId, TrustDomain,
    X509AuthoritySource,
};
use tonic::transport::Channel;

use super::{
    Attested, CALL_TIMEOUT, NodeApi, NodeApiError, SignOutcome, SyncStream, SyncUpdate,
    entry_from_proto, policy_from_proto,
};
use crate::proto::{self, node_client::NodeClient};

/// How an agent reaches the server: its address and identity, the agent's
/// node SVID (empty until attestation) and the bundles that authenticate
/// the server.
#[derive(Clone)]
pub struct NodeTls {
    /// The server's address, `host:port`.
    pub address: String,
    /// The SPIFFE ID the server must present.
    pub server_id: SpiffeId,
    /// The agent's node SVID.
    pub node_svid: Arc<MemorySvidSource>,
    /// What the server's certificate is verified against.
    pub bundles: Arc<dyn X509AuthoritySource>,
    /// The crypto provider.
    pub provider: Arc<CryptoProvider>,
    /// Attest without authenticating the server when `bundles` holds no
    /// bundle of its trust domain (see the agent's `insecure_bootstrap`).
    pub insecure_bootstrap: bool,
    /// HTTP/2 PING interval, also while idle.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("address", &self.address)
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

/// The node API over gRPC. Calls other than [`NodeApi::attest`] present the
/// node SVID; attestation uses a connection of its own without one.
#[derive(Clone, Debug)]
pub struct GrpcNodeApi {
    tls: NodeTls,
    /// Replaced after each attestation, so that no connection made with an
    /// earlier identity (or none) is used again.
    channel: Arc<std::sync::Mutex<Channel>>,
}

impl GrpcNodeApi {
    /// A client of the server `tls` describes. Connects lazily.
    pub fn new(tls: NodeTls) -> Result<Self, NodeApiError> {
        let channel = channel(&tls, tls.node_svid.clone())?;
        Ok(GrpcNodeApi {
            channel: Arc::new(std::sync::Mutex::new(channel)),
            tls,
        })
    }

    /// The server's service registry, over the same connection (so with
    /// the node's identity).
    pub fn discovery(&self) -> super::GrpcDiscovery {
        super::GrpcDiscovery::new(self.current_channel())
    }

    fn current_channel(&self) -> Channel {
        self.channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn client(&self) -> NodeClient<Channel> {
        NodeClient::new(self.current_channel())
    }
}

fn channel(tls: &NodeTls, svid: Arc<MemorySvidSource>) -> Result<Channel, NodeApiError> {
    let config = ClientConfigBuilder::new(
        tls.provider.clone(),
        svid,
        tls.bundles.clone(),
        authorizer::exact(tls.server_id.clone()),
    )
    // Before attestation the agent has no SVID to say which trust domain
    // is local: name the server's explicitly.
    .trust_policy(TrustPolicy::local_only().with_federated([tls.server_id.trust_domain().clone()]))
    .alpn_protocols(vec![b"h2".to_vec()])
    .build()
    .map_err(|e| NodeApiError::Internal(format!("TLS configuration: {e}")))?;
    let uri: http::Uri = format!("http://{}", tls.address)
        .parse()
        .map_err(|e| NodeApiError::InvalidArgument(format!("server address: {e}")))?;
    let connector = MtlsConnector::new(config).connect_timeout(Duration::from_secs(5));
    // PINGs, also while the sync stream is idle: a partition that drops
    // packets without a reset ends the stream instead of leaving the agent
    // waiting on a connection that is gone.
    Ok(tonic::transport::Endpoint::from(uri)
        .http2_keep_alive_interval(tls.keepalive_interval)
        .keep_alive_timeout(tls.keepalive_timeout)
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector))
}

pub(crate) fn status_to_error(s: tonic::Status) -> NodeApiError {
    let msg = s.message().to_owned();
    match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            NodeApiError::PermissionDenied(msg)
        }
        tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
            NodeApiError::InvalidArgument(msg)
        }
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            NodeApiError::Unavailable(if msg.is_empty() {
                format!("{:?}", s.code())
            } else {
                msg
            })
        }
        _ => NodeApiError::Internal(format!("{:?}: {msg}", s.code())),
    }
}

fn with_deadline<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(CALL_TIMEOUT);
    req
}

fn chain(ders: Vec<Vec<u8>>) -> Vec<CertificateDer<'static>> {
    ders.into_iter().map(CertificateDer::from).collect()
}

pub(crate) fn parse_bundle(td: &TrustDomain, json: &[u8]) -> Result<SpiffeBundle, NodeApiError> {
    SpiffeBundle::parse(td.clone(), json)
        .map_err(|e| NodeApiError::Malformed(format!("bundle of {td}: {e}")))
}

fn update_from_proto(td: &TrustDomain, u: proto::SyncUpdate) -> Result<SyncUpdate, NodeApiError> {
    let entries = u
        .entries
        .into_iter()
        .map(entry_from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(NodeApiError::Malformed)?;
    let removed = u
        .removed
        .iter()
        .map(|id| id.parse::<EntryId>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NodeApiError::Malformed(format!("removed entry id: {e}")))?;
    let bundle = if u.bundle.is_empty() {
        None
    } else {
        Some(parse_bundle(td, &u.bundle)?)
    };
    let federated = if u.federated_changed {
        let mut all = Vec::new();
        for (name, json) in &u.federated_bundles {
            let ftd: TrustDomain = name
                .parse()
                .map_err(|e| NodeApiError::Malformed(format!("federated trust domain: {e}")))?;
            all.push(parse_bundle(&ftd, json)?);
        }
        Some(all)
    } else {
        None
    };
    let policy = if u.policy_changed {
        Some(policy_from_proto(u.policy.unwrap_or_default()))
    } else {
        None
    };
    Ok(SyncUpdate {
        revision: u.revision,
        full: u.full,
        entries,
        removed,
        bundle,
        federated,
        policy,
        sent_at: (u.sent_at_unix_ms > 0)
            .then(|| std::time::UNIX_EPOCH + std::time::Duration::from_millis(u.sent_at_unix_ms)),
    })
}

impl NodeApi for GrpcNodeApi {
    fn attest(
        &self,
        attestor: &str,
        payload: Vec<u8>,
        csr: Vec<u8>,
    ) -> BoxFuture<'static, Result<Attested, NodeApiError>> {
        let tls = self.tls.clone();
        let attestor = attestor.to_owned();
        let shared = self.channel.clone();
        Box::pin(async move {
            // A connection of its own, presenting no certificate.
            let td = tls.server_id.trust_domain();
            let trusted = tls.bundles.bundle_set().get(td).is_some();
            let anonymous = if tls.insecure_bootstrap && !trusted {
                tracing::warn!(
                    server = %tls.address,
                    "INSECURE BOOTSTRAP: attesting without authenticating the server; \
                     whoever answers at this address becomes this agent's server"
                );
                super::insecure::channel(tls.provider.clone(), &tls.address)?
            } else {
                channel(&tls, Arc::new(MemorySvidSource::empty()))?
            };
            let resp = NodeClient::new(anonymous)
                .attest(with_deadline(proto::AttestRequest {
                    attestor,
                    payload,
                    csr,
                }))
                .await
                .map_err(status_to_error)?
                .into_inner();
            let spiffe_id: SpiffeId = resp
                .spiffe_id
                .parse()
                .map_err(|e| NodeApiError::Malformed(format!("node id: {e}")))?;
            let bundle = parse_bundle(spiffe_id.trust_domain(), &resp.bundle)?;
            // Later calls connect afresh, presenting the new node SVID.
            let fresh = channel(&tls, tls.node_svid.clone())?;
            *shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            Ok(Attested {
                chain: chain(resp.cert_chain),
                spiffe_id,
                bundle,
            })
        })
    }

    fn renew_node(
        &self,
        csr: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<CertificateDer<'static>>, NodeApiError>> {
        let mut client = self.client();
        Box::pin(async move {
            let resp = client
                .renew_node(with_deadline(proto::RenewNodeRequest { csr }))
                .await
                .map_err(status_to_error)?;
            Ok(chain(resp.into_inner().cert_chain))
        })
    }

    fn sync(&self) -> BoxFuture<'static, Result<SyncStream, NodeApiError>> {
        let mut client = self.client();
        let td = self.tls.server_id.trust_domain().clone();
        Box::pin(async move {
            // Only the opening is bounded: the stream stays open.
            let req = tonic::Request::new(proto::SyncRequest {});
            let stream = tokio::time::timeout(CALL_TIMEOUT, client.sync(req))
                .await
                .map_err(|_| NodeApiError::Unavailable("sync did not open in time".into()))?
                .map_err(status_to_error)?
                .into_inner();
            let stream = stream.map(move |item| match item {
                Ok(u) => update_from_proto(&td, u),
                Err(s) => Err(status_to_error(s)),
            });
            Ok(Box::pin(stream) as SyncStream)
        })
    }

    fn sign_workloads(
        &self,
        csrs: Vec<(EntryId, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<Vec<(EntryId, SignOutcome)>, NodeApiError>> {
        let mut client = self.client();
        Box::pin(async move {
            let req = proto::SignWorkloadsRequest {
                csrs: csrs
                    .into_iter()
                    .map(|(id, csr)| proto::WorkloadCsr {
                        entry_id: id.to_string(),
                        csr,
                    })
                    .collect(),
            };
            let resp = client
                .sign_workloads(with_deadline(req))
                .await
                .map_err(status_to_error)?
                .into_inner();
            resp.svids
                .into_iter()
                .map(|s| {
                    let id: EntryId = s
                        .entry_id
                        .parse()
                        .map_err(|e| NodeApiError::Malformed(format!("entry id: {e}")))?;
                    let outcome = if s.error.is_empty() {
                        Ok(chain(s.cert_chain))
                    } else {
                        Err(s.error)
                    };
                    Ok((id, outcome))
                })
                .collect()
        })
    }

    fn mint_jwt_svid(
        &self,
        entry: EntryId,
        audience: Vec<String>,
    ) -> BoxFuture<'static, Result<String, NodeApiError>> {
        let mut client = self.client();
        Box::pin(async move {
            let resp = client
                .mint_jwt_svid(with_deadline(proto::MintJwtSvidRequest {
                    entry_id: entry.to_string(),
                    audience,
                }))
                .await
                .map_err(status_to_error)?;
            Ok(resp.into_inner().token)
        })
    }
}
