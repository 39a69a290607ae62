//! Service discovery: endpoints registered under leases, watched by
//! service. The [`Discovery`] trait is the seam outbound proxies read;
//! [`ServiceRegistry`] is its in-process implementation and what the
//! server's gRPC `Discovery` service answers from.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use spiffe_core::SpiffeId;
use tokio::sync::watch;

/// Longest lease a registration may ask for.
pub const MAX_LEASE: Duration = Duration::from_secs(300);
/// Endpoints one registry holds, at most.
pub const MAX_ENDPOINTS: usize = 100_000;

/// One endpoint of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// The service's name.
    pub service: String,
    /// The service's namespace.
    pub namespace: String,
    /// IP address or host name.
    pub address: String,
    /// Port.
    pub port: u16,
    /// `http`, `http2`, `grpc` or `tcp`.
    pub protocol: String,
    /// The identity the endpoint presents; callers require it.
    pub spiffe_id: SpiffeId,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Names one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Name.
    pub service: String,
    /// Namespace.
    pub namespace: String,
}

impl Endpoint {
    /// The service this endpoint belongs to.
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            service: self.service.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The caller may not register an endpoint with that identity.
    #[error("{caller} may not register an endpoint for {endpoint}")]
    NotOwnIdentity {
        /// Who asked.
        caller: SpiffeId,
        /// The endpoint's identity.
        endpoint: SpiffeId,
    },
    /// A field is empty or out of range.
    #[error("invalid endpoint: {0}")]
    Invalid(&'static str),
    /// No such lease (expired or never granted).
    #[error("no lease {0}")]
    UnknownLease(String),
    /// The registry cannot be reached.
    #[error("the service registry is unavailable: {0}")]
    Unavailable(String),
    /// The registry is full.
    #[error("the service registry holds {MAX_ENDPOINTS} endpoints already")]
    Full,
}

#[derive(Debug)]
struct Leased {
    endpoint: Endpoint,
    owner: SpiffeId,
    expires: Instant,
}

/// Endpoints under leases, in memory: a restarted server starts empty and
/// fills again as leases are renewed (a renewal of an unknown lease fails,
/// and the holder registers again).
#[derive(Debug)]
pub struct ServiceRegistry {
    leases: RwLock<HashMap<String, Leased>>,
    changes: watch::Sender<u64>,
}

impl Default for ServiceRegistry {
    fn default() -> Self {
        ServiceRegistry {
            leases: RwLock::default(),
            changes: watch::channel(0).0,
        }
    }
}

fn validate(e: &Endpoint) -> Result<(), DiscoveryError> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if !name_ok(&e.service) {
        return Err(DiscoveryError::Invalid("service"));
    }
    if !name_ok(&e.namespace) {
        return Err(DiscoveryError::Invalid("namespace"));
    }
    if e.address.is_empty() || e.address.len() > 253 {
        return Err(DiscoveryError::Invalid("address"));
    }
    if e.port == 0 {
        return Err(DiscoveryError::Invalid("port"));
    }
    if !matches!(e.protocol.as_str(), "http" | "http2" | "grpc" | "tcp") {
        return Err(DiscoveryError::Invalid("protocol"));
    }
    if e.labels.len() > 64 {
        return Err(DiscoveryError::Invalid("labels"));
    }
    Ok(())
}

impl ServiceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn bump(&self) {
        self.changes.send_modify(|r| *r += 1);
    }

    /// Registers `endpoint` for `ttl` (capped at [`MAX_LEASE`]) on behalf
    /// of `owner`, whose right to the endpoint's identity the caller has
    /// checked. Returns the lease id.
    pub fn register(
        &self,
        owner: &SpiffeId,
        endpoint: Endpoint,
        ttl: Duration,
    ) -> Result<(String, Duration), DiscoveryError> {
        validate(&endpoint)?;
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_LEASE);
        let id = spiffe_core::EntryId::random()
            .map_err(|_| DiscoveryError::Invalid("lease id"))?
            .to_string();
        let mut leases = self.leases.write().unwrap_or_else(PoisonError::into_inner);
        if leases.len() >= MAX_ENDPOINTS {
            return Err(DiscoveryError::Full);
        }
        // One lease per (owner, endpoint): registering again replaces it.
        leases.retain(|_, l| !(l.owner == *owner && l.endpoint == endpoint));
        leases.insert(
            id.clone(),
            Leased {
                endpoint,
                owner: owner.clone(),
                expires: Instant::now() + ttl,
            },
        );
        drop(leases);
        self.bump();
        Ok((id, ttl))
    }

    /// Extends lease `id` of `owner` by `ttl`.
    pub fn renew(
        &self,
        owner: &SpiffeId,
        id: &str,
        ttl: Duration,
    ) -> Result<Duration, DiscoveryError> {
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_LEASE);
        let mut leases = self.leases.write().unwrap_or_else(PoisonError::into_inner);
        match leases.get_mut(id) {
            Some(l) if l.owner == *owner && l.expires > Instant::now() => {
                l.expires = Instant::now() + ttl;
                Ok(ttl)
            }
            _ => Err(DiscoveryError::UnknownLease(id.chars().take(64).collect())),
        }
    }

    /// Ends lease `id` of `owner`.
    pub fn deregister(&self, owner: &SpiffeId, id: &str) -> Result<(), DiscoveryError> {
        let mut leases = self.leases.write().unwrap_or_else(PoisonError::into_inner);
        match leases.get(id) {
            Some(l) if l.owner == *owner => {
                leases.remove(id);
                drop(leases);
                self.bump();
                Ok(())
            }
            _ => Err(DiscoveryError::UnknownLease(id.chars().take(64).collect())),
        }
    }

    /// Drops expired leases; returns how many.
    pub fn expire(&self) -> usize {
        let now = Instant::now();
        let mut leases = self.leases.write().unwrap_or_else(PoisonError::into_inner);
        let before = leases.len();
        leases.retain(|_, l| l.expires > now);
        let gone = before - leases.len();
        drop(leases);
        if gone > 0 {
            self.bump();
        }
        gone
    }

    /// Runs [`ServiceRegistry::expire`] every second, forever.
    pub async fn expiry_task(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.expire();
        }
    }

    /// The live endpoints of `services`, sorted.
    pub fn endpoints(&self, services: &[ServiceKey]) -> Vec<Endpoint> {
        let now = Instant::now();
        let leases = self.leases.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Endpoint> = leases
            .values()
            .filter(|l| l.expires > now && services.contains(&l.endpoint.key()))
            .map(|l| l.endpoint.clone())
            .collect();
        out.sort_by(|a, b| {
            (&a.service, &a.namespace, &a.address, a.port).cmp(&(
                &b.service,
                &b.namespace,
                &b.address,
                b.port,
            ))
        });
        out.dedup();
        out
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The endpoints of some services, as a watch yields them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSet {
    /// Grows with every change.
    pub revision: u64,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// What an outbound proxy reads: the endpoints of the services it calls.
pub trait Discovery: Send + Sync + 'static {
    /// A stream of the full endpoint set of `services`: the current set at
    /// once, then again after every change.
    fn watch(
        &self,
        services: Vec<ServiceKey>,
    ) -> futures_util::stream::BoxStream<'static, Result<EndpointSet, DiscoveryError>>;
}

impl Discovery for Arc<ServiceRegistry> {
    fn watch(
        &self,
        services: Vec<ServiceKey>,
    ) -> futures_util::stream::BoxStream<'static, Result<EndpointSet, DiscoveryError>> {
        let registry = self.clone();
        let changes = self.subscribe();
        Box::pin(futures_util::stream::unfold(
            (registry, changes, services, None::<Vec<Endpoint>>),
            |(registry, mut changes, services, last)| async move {
                loop {
                    let revision = *changes.borrow_and_update();
                    let now = registry.endpoints(&services);
                    if last.as_ref() != Some(&now) {
                        let set = EndpointSet {
                            revision,
                            endpoints: now.clone(),
                        };
                        return Some((Ok(set), (registry, changes, services, Some(now))));
                    }
                    changes.changed().await.ok()?;
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn ep(service: &str, port: u16, id: &str) -> Endpoint {
        Endpoint {
            service: service.into(),
            namespace: "bookinfo".into(),
            address: "127.0.0.1".into(),
            port,
            protocol: "http".into(),
            spiffe_id: id.parse().unwrap(),
            labels: BTreeMap::new(),
        }
    }

    fn key(s: &str) -> ServiceKey {
        ServiceKey {
            service: s.into(),
            namespace: "bookinfo".into(),
        }
    }

    #[tokio::test]
    async fn watchers_see_registrations_and_expired_leases_drop_out() {
        let reg = Arc::new(ServiceRegistry::new());
        let owner: SpiffeId = "spiffe://example.org/reviews".parse().unwrap();
        let mut watch = reg.watch(vec![key("reviews")]);
        let first = watch.next().await.unwrap().unwrap();
        assert!(first.endpoints.is_empty());
        let (lease, ttl) = reg
            .register(
                &owner,
                ep("reviews", 9080, "spiffe://example.org/reviews"),
                Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(ttl, Duration::from_secs(1));
        // Another service's endpoint is not this watcher's business.
        let other: SpiffeId = "spiffe://example.org/ratings".parse().unwrap();
        reg.register(
            &other,
            ep("ratings", 9081, "spiffe://example.org/ratings"),
            Duration::from_secs(60),
        )
        .unwrap();
        let seen = watch.next().await.unwrap().unwrap();
        assert_eq!(seen.endpoints.len(), 1);
        assert_eq!(seen.endpoints[0].port, 9080);
        // Someone else cannot renew it.
        assert!(reg.renew(&other, &lease, Duration::from_secs(1)).is_err());
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(reg.expire(), 1);
        let gone = tokio::time::timeout(Duration::from_secs(2), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(gone.endpoints.is_empty());
        assert!(matches!(
            reg.renew(&owner, &lease, Duration::from_secs(1)),
            Err(DiscoveryError::UnknownLease(_))
        ));
    }

    #[test]
    fn malformed_endpoints_are_refused() {
        let reg = ServiceRegistry::new();
        let owner: SpiffeId = "spiffe://example.org/a".parse().unwrap();
        for (e, field) in [
            (
                Endpoint {
                    service: String::new(),
                    ..ep("a", 1, "spiffe://example.org/a")
                },
                "service",
            ),
            (
                Endpoint {
                    namespace: "bad ns".into(),
                    ..ep("a", 1, "spiffe://example.org/a")
                },
                "namespace",
            ),
            (ep("a", 0, "spiffe://example.org/a"), "port"),
            (
                Endpoint {
                    protocol: "ftp".into(),
                    ..ep("a", 1, "spiffe://example.org/a")
                },
                "protocol",
            ),
        ] {
            assert_eq!(
                reg.register(&owner, e, Duration::from_secs(5)),
                Err(DiscoveryError::Invalid(field))
            );
        }
    }
}
