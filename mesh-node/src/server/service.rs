//! [`NodeService`]: what the server answers on the node API, whatever the
//! transport. Every call but attestation names its caller, the node SPIFFE
//! ID that the transport authenticated.

use std::collections::HashMap;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use spiffe_core::{EntryId, SpiffeBundle, SpiffeId};
use svid_ca::{
    AttestError, AttestedNode, CertificateAuthority, Entitlement, IssueError, NodeAttestor,
    NodeStore, RegistrationEntry, Registry, StoreError,
};
use tokio::sync::watch;

use super::federation::FederationRegistry;
use super::metrics::ServerMetrics;
use super::policy::PolicyStore;
use crate::discovery::ServiceRegistry;
use crate::policy_feed::PolicyBundle;

/// Why the server refused a node API call. Its crate-internal `code` is the
/// one place these meet gRPC.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The caller is not an attested node (never attested, or evicted).
    #[error("{node} is not an attested node of this server (unknown or evicted)")]
    UnknownNode {
        /// The caller.
        node: SpiffeId,
    },
    /// No attestor of that name is configured.
    #[error("no node attestor named {name:?}")]
    UnknownAttestor {
        /// The name asked for.
        name: String,
    },
    /// The attestor refused the evidence.
    #[error("attestation failed: {0}")]
    Attestation(#[from] AttestError),
    /// The entry does not exist or is not the caller's.
    #[error("entry {id} is not an entry of this node")]
    NotEntitled {
        /// The entry.
        id: EntryId,
    },
    /// Signing failed (a malformed CSR, say).
    #[error("{0}")]
    Issue(#[from] IssueError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl NodeError {
    /// The gRPC status code for this error.
    pub(crate) fn code(&self) -> tonic::Code {
        match self {
            NodeError::UnknownNode { .. } | NodeError::NotEntitled { .. } => {
                tonic::Code::PermissionDenied
            }
            NodeError::Attestation(AttestError::Store(_)) | NodeError::Store(_) => {
                tonic::Code::Unavailable
            }
            NodeError::Attestation(_) => tonic::Code::PermissionDenied,
            NodeError::UnknownAttestor { .. } => tonic::Code::InvalidArgument,
            NodeError::Issue(IssueError::Authority(_) | IssueError::Signing) => {
                tonic::Code::Unavailable
            }
            NodeError::Issue(_) => tonic::Code::InvalidArgument,
        }
    }
}

/// One CSR's outcome: the signed chain, or why not.
pub type Signed = Result<Vec<CertificateDer<'static>>, NodeError>;

/// What one node's agent is told: its entries and the bundles.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// The entries the node's workloads may hold, by id.
    pub entries: HashMap<EntryId, Arc<RegistrationEntry>>,
    /// The trust domain's bundle.
    pub bundle: Option<Arc<SpiffeBundle>>,
    /// The policy set in force.
    pub policy: Option<Arc<PolicyBundle>>,
    /// The bundles of the federated trust domains (every relationship's
    /// last good bundle).
    pub federated: Arc<std::collections::BTreeMap<spiffe_core::TrustDomain, SpiffeBundle>>,
}

/// The node API's logic: attestation, node SVIDs, entry views, batch
/// signing, JWT-SVIDs.
#[derive(Debug)]
pub struct NodeService {
    ca: Arc<CertificateAuthority>,
    registry: Arc<Registry>,
    nodes: Arc<dyn NodeStore>,
    attestors: Vec<Arc<dyn NodeAttestor>>,
    changes: watch::Sender<u64>,
    metrics: Arc<ServerMetrics>,
    policies: Arc<PolicyStore>,
    services: Arc<ServiceRegistry>,
    federation: Arc<FederationRegistry>,
    default_parent: std::sync::RwLock<Option<SpiffeId>>,
}

impl NodeService {
    /// A service over the authority, its registry and node records.
    // One argument per part `server::build` wires in; a builder would
    // only move the same list elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ca: Arc<CertificateAuthority>,
        registry: Arc<Registry>,
        nodes: Arc<dyn NodeStore>,
        attestors: Vec<Arc<dyn NodeAttestor>>,
        metrics: Arc<ServerMetrics>,
        policies: Arc<PolicyStore>,
        services: Arc<ServiceRegistry>,
        federation: Arc<FederationRegistry>,
    ) -> Self {
        NodeService {
            ca,
            registry,
            nodes,
            attestors,
            changes: watch::channel(0).0,
            metrics,
            policies,
            services,
            federation,
            default_parent: std::sync::RwLock::new(None),
        }
    }

    /// Makes entries created without a parent children of `id` (the
    /// embedded agent of `mesh-node up`).
    pub fn set_default_parent(&self, id: SpiffeId) {
        *self
            .default_parent
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(id);
    }

    /// The parent of entries created without one, if set.
    pub fn default_parent(&self) -> Option<SpiffeId> {
        self.default_parent
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The policy store.
    pub fn policies(&self) -> &Arc<PolicyStore> {
        &self.policies
    }

    /// The service registry.
    pub fn services(&self) -> &Arc<ServiceRegistry> {
        &self.services
    }

    /// Whether `caller` may register an endpoint that presents `id`: its
    /// own identity, or, for an attested node's agent acting for its
    /// workloads, an identity one of the node's entries grants.
    pub fn may_register(&self, caller: &SpiffeId, id: &SpiffeId) -> bool {
        caller == id
            || self.node(caller).is_ok_and(|node| {
                self.view(&node)
                    .entries
                    .values()
                    .any(|e| &e.spiffe_id == id)
            })
    }

    /// The authority.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The node records.
    pub fn nodes(&self) -> &Arc<dyn NodeStore> {
        &self.nodes
    }

    /// Tells every open sync stream that entries or nodes changed.
    pub fn changed(&self) {
        self.changes.send_modify(|r| *r += 1);
        self.metrics.entries.set(self.registry.len() as i64);
    }

    /// The federation relationships and their bundles.
    pub fn federation(&self) -> &Arc<FederationRegistry> {
        &self.federation
    }

    /// A receiver that sees every [`NodeService::changed`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Attests with `attestor`'s evidence and signs the node SVID for the
    /// CSR's key.
    pub fn attest(
        &self,
        attestor: &str,
        payload: &[u8],
        csr: &[u8],
    ) -> Result<(AttestedNode, Vec<CertificateDer<'static>>), NodeError> {
        let result = self.attest_inner(attestor, payload, csr);
        self.metrics.count_result("attest", &result);
        if result.is_ok() {
            self.metrics.agents.inc();
        }
        result
    }

    fn attest_inner(
        &self,
        attestor: &str,
        payload: &[u8],
        csr: &[u8],
    ) -> Result<(AttestedNode, Vec<CertificateDer<'static>>), NodeError> {
        let a = self
            .attestors
            .iter()
            .find(|a| a.name() == attestor)
            .ok_or_else(|| NodeError::UnknownAttestor {
                name: attestor.chars().take(64).collect(),
            })?;
        let node = a.attest_bound(payload, csr)?;
        let issued = self.ca.sign_csr_key(csr, &node.entitlement())?;
        tracing::info!(node = %node.spiffe_id, attestor, "node attested");
        Ok((node, issued.chain))
    }

    /// The attested node `caller`, or why it is refused.
    pub fn node(&self, caller: &SpiffeId) -> Result<AttestedNode, NodeError> {
        self.nodes
            .attested_node(caller)?
            .ok_or_else(|| NodeError::UnknownNode {
                node: caller.clone(),
            })
    }

    /// Signs a new node SVID for `caller`.
    pub fn renew_node(
        &self,
        caller: &SpiffeId,
        csr: &[u8],
    ) -> Result<Vec<CertificateDer<'static>>, NodeError> {
        let result = self
            .node(caller)
            .and_then(|node| Ok(self.ca.sign_csr_key(csr, &node.entitlement())?.chain));
        self.metrics.count_result("renew_node", &result);
        result
    }

    /// What `node`'s agent must know now: the entries parented by the node
    /// itself or by a node alias whose selectors the node has, and the
    /// bundle.
    pub fn view(&self, node: &AttestedNode) -> NodeView {
        let now = self.ca.now();
        let mut entries = HashMap::new();
        for e in self.registry.children(&node.spiffe_id, now) {
            entries.insert(e.id.clone(), e);
        }
        let aliases = self
            .registry
            .matching(&self.registry.server_id(), &node.selectors, now);
        for alias in aliases {
            for e in self.registry.children(&alias.spiffe_id, now) {
                entries.insert(e.id.clone(), e);
            }
        }
        NodeView {
            entries,
            bundle: Some(self.ca.bundle()),
            policy: Some(self.policies.current()),
            federated: self.federation.current(),
        }
    }

    /// The entry `id`, if it is one of `caller`'s.
    fn entry_of(
        &self,
        caller: &AttestedNode,
        id: &EntryId,
    ) -> Result<Arc<RegistrationEntry>, NodeError> {
        let entry = self
            .registry
            .get(id)
            .ok_or_else(|| NodeError::NotEntitled { id: id.clone() })?;
        if entry.parent_id == caller.spiffe_id {
            return Ok(entry);
        }
        // Rare path: an entry under a node alias.
        self.view(caller)
            .entries
            .remove(id)
            .ok_or_else(|| NodeError::NotEntitled { id: id.clone() })
    }

    /// Signs each CSR for its entry; the outcome of each is independent.
    pub fn sign_workloads(
        &self,
        caller: &SpiffeId,
        csrs: &[(EntryId, Vec<u8>)],
    ) -> Result<Vec<(EntryId, Signed)>, NodeError> {
        let node = self.node(caller)?;
        let out: Vec<_> = csrs
            .iter()
            .map(|(id, csr)| {
                let signed = self.entry_of(&node, id).and_then(|entry| {
                    Ok(self.ca.sign_csr(csr, &[Entitlement::from(&*entry)])?.chain)
                });
                self.metrics.count_result("sign_workload", &signed);
                (id.clone(), signed)
            })
            .collect();
        Ok(out)
    }

    /// Signs a JWT-SVID for entry `id` of `caller`.
    pub fn mint_jwt_svid(
        &self,
        caller: &SpiffeId,
        id: &EntryId,
        audience: &[String],
    ) -> Result<String, NodeError> {
        let result = self.node(caller).and_then(|node| {
            let entry = self.entry_of(&node, id)?;
            let svid = self
                .ca
                .issue_jwt_svid(&Entitlement::from(&*entry), audience)?;
            Ok(svid.token().to_owned())
        });
        self.metrics.count_result("mint_jwt_svid", &result);
        result
    }

    /// Forgets node `id`: its agent's calls are refused from now on, and its
    /// open sync stream ends.
    pub fn evict(&self, id: &SpiffeId) -> Result<bool, NodeError> {
        let evicted = self.nodes.delete_attested_node(id)?;
        if evicted {
            tracing::info!(node = %id, "node evicted");
            self.metrics.agents.dec();
            self.changed();
        }
        Ok(evicted)
    }
}
