//! Where a service's endpoints are and who must answer there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use spiffe_core::SpiffeId;

use crate::balance::{BalanceConfig, Balancer};

/// One endpoint of a service: the address of the inbound listener of the
/// sidecar in front of it, and the SPIFFE ID that must answer the mTLS
/// handshake there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The peer sidecar's inbound address.
    pub addr: SocketAddr,
    /// The identity the endpoint registered; the handshake must prove it.
    pub identity: SpiffeId,
}

/// A service as the mesh names it: `name.namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Service name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

impl ServiceKey {
    /// `name.namespace`.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        ServiceKey {
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

/// The endpoints of every service this sidecar calls, each service with
/// its own [`Balancer`].
///
/// Fed by discovery (the binary relays the agent's stream into
/// [`Endpoints::set_service`]) or by static config. Updating a service
/// keeps the balancing statistics of endpoints that stay.
#[derive(Debug)]
pub struct Endpoints {
    config: BalanceConfig,
    /// Looked up on every request: foldhash, not SipHash.
    services: RwLock<HashMap<ServiceKey, Arc<Balancer>, foldhash::fast::RandomState>>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl Endpoints {
    /// An empty registry whose balancers use `config`.
    pub fn new(config: BalanceConfig) -> Self {
        Endpoints {
            config,
            services: RwLock::new(HashMap::default()),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Sees every change of any service's endpoints.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether `target` is an endpoint of some service.
    pub fn contains(&self, target: &Target) -> bool {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|b| b.contains(target))
    }

    /// Sets the endpoints of one service; an empty list removes it (calls
    /// to it get a 503 at once).
    pub fn set_service(&self, key: ServiceKey, targets: Vec<Target>) {
        {
            let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
            if targets.is_empty() {
                services.remove(&key);
            } else {
                services
                    .entry(key)
                    .or_insert_with(|| Arc::new(Balancer::new(self.config.clone())))
                    .set_targets(targets);
            }
        }
        self.changes.send_modify(|g| *g += 1);
    }

    /// Replaces every service at once: services not in `all` are removed.
    pub fn replace_all(&self, all: HashMap<ServiceKey, Vec<Target>>) {
        let keep: Vec<ServiceKey> = all.keys().cloned().collect();
        for (key, targets) in all {
            self.set_service(key, targets);
        }
        self.services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep.contains(k));
        self.changes.send_modify(|g| *g += 1);
    }

    /// The balancer of a service, if it has endpoints.
    pub fn service(&self, key: &ServiceKey) -> Option<Arc<Balancer>> {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// The service an endpoint address belongs to (transparent TCP, where
    /// only the original destination is known).
    pub fn by_address(&self, addr: SocketAddr) -> Option<(ServiceKey, Arc<Balancer>)> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        services
            .iter()
            .find(|(_, b)| b.serves(addr))
            .map(|(k, b)| (k.clone(), b.clone()))
    }

    /// Every service and its balancer, sorted by name (for `/clusters`).
    pub fn all(&self) -> Vec<(ServiceKey, Arc<Balancer>)> {
        let mut v: Vec<_> = self
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// The routing stage: which service an authority (`Host`, absolute-form
/// URI or `CONNECT` target) names.
///
/// Accepts `name.namespace`, `name.namespace.svc`,
/// `name.namespace.svc.cluster.local` (any cluster domain), with an
/// optional `:port`; a bare `name` is in `default_namespace`. Weighted
/// VirtualService routing will slot in here, between naming and
/// balancing.
pub fn route(authority: &str, default_namespace: &str) -> Option<(ServiceKey, Option<u16>)> {
    route_parsed(&authority.parse().ok()?, default_namespace)
}

/// [`route`] for an authority already parsed.
pub fn route_parsed(
    authority: &http::uri::Authority,
    default_namespace: &str,
) -> Option<(ServiceKey, Option<u16>)> {
    let host = authority.host();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    let mut labels = host.split('.').filter(|l| !l.is_empty());
    let key = match (labels.next(), labels.next(), labels.next()) {
        (Some(name), None, _) => ServiceKey::new(name, default_namespace),
        (Some(name), Some(ns), None | Some("svc")) => ServiceKey::new(name, ns),
        _ => return None,
    };
    Some((key, authority.port_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_services_the_istio_ways() {
        let k = |n: &str, ns: &str| ServiceKey::new(n, ns);
        assert_eq!(
            route("reviews.bookinfo:9080", "x"),
            Some((k("reviews", "bookinfo"), Some(9080)))
        );
        assert_eq!(
            route("reviews.bookinfo", "x"),
            Some((k("reviews", "bookinfo"), None))
        );
        assert_eq!(
            route("reviews.bookinfo.svc.cluster.local:80", "x"),
            Some((k("reviews", "bookinfo"), Some(80)))
        );
        assert_eq!(
            route("reviews", "bookinfo"),
            Some((k("reviews", "bookinfo"), None))
        );
        assert_eq!(
            route("reviews.bookinfo.svc", "x"),
            Some((k("reviews", "bookinfo"), None))
        );
        assert_eq!(
            route("reviews..bookinfo.", "x"),
            Some((k("reviews", "bookinfo"), None)),
            "empty labels are skipped"
        );
        assert_eq!(route("127.0.0.1:9080", "x"), None);
        assert_eq!(route("[::1]:9080", "x"), None);
        assert_eq!(
            route("a.b.c", "x"),
            None,
            "three labels without svc are not a mesh name"
        );
        assert_eq!(route("", "x"), None);
        assert_eq!(route("bad host:1", "x"), None);
    }
}
