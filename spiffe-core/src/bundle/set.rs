//! [`BundleSet`]: every bundle a workload trusts, keyed by trust domain.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::{Map, Value};

use super::map::BundleMap;
use super::{BundleError, SpiffeBundle};
use crate::TrustDomain;
use crate::jwt::{JwtBundle, JwtBundleLookup};
use crate::x509::{X509Bundle, X509BundleLookup};

/// The bundles a workload trusts, one per trust domain: its own and the
/// federated ones. Verification always selects the bundle of the peer's own
/// trust domain (X509-6, JWT-15); bundles are never merged (FED-6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleSet {
    bundles: HashMap<TrustDomain, SpiffeBundle>,
}

impl BundleSet {
    /// An empty set: nothing is trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the bundle of its trust domain, returning the old one.
    pub fn insert(&mut self, bundle: SpiffeBundle) -> Option<SpiffeBundle> {
        self.bundles.insert(bundle.trust_domain().clone(), bundle)
    }

    /// Adds or replaces only the X.509 authorities of a trust domain.
    pub fn insert_x509(&mut self, x509: X509Bundle) {
        match self.bundles.entry(x509.trust_domain().clone()) {
            Entry::Occupied(mut e) => {
                let old = e.get();
                let mut b = SpiffeBundle::from_parts(x509, old.jwt().clone());
                if let Some(seq) = old.sequence() {
                    b = b.with_sequence(seq);
                }
                e.insert(b);
            }
            Entry::Vacant(e) => {
                e.insert(SpiffeBundle::from_x509(x509));
            }
        }
    }

    /// Adds or replaces only the JWT keys of a trust domain.
    pub fn insert_jwt(&mut self, jwt: JwtBundle) {
        match self.bundles.entry(jwt.trust_domain().clone()) {
            Entry::Occupied(mut e) => {
                let old = e.get();
                let mut b = SpiffeBundle::from_parts(old.x509().clone(), jwt);
                if let Some(seq) = old.sequence() {
                    b = b.with_sequence(seq);
                }
                e.insert(b);
            }
            Entry::Vacant(e) => {
                e.insert(SpiffeBundle::from_jwt(jwt));
            }
        }
    }

    /// Removes a trust domain's bundle (ends trust in it: FED-10).
    pub fn remove(&mut self, td: &TrustDomain) -> Option<SpiffeBundle> {
        self.bundles.remove(td)
    }

    /// The bundle of `td`.
    pub fn get(&self, td: &TrustDomain) -> Option<&SpiffeBundle> {
        self.bundles.get(td)
    }

    /// All bundles, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &SpiffeBundle> {
        self.bundles.values()
    }

    /// The number of trust domains.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Parses a SPIFFE bundle map: `trust_domains` must exist (MAP-1) and no
    /// trust domain may appear twice (MAP-2). Per-bundle refresh hints are
    /// read but carry no meaning for the map (MAP-3).
    pub fn from_bundle_map(json: &[u8]) -> Result<Self, BundleError> {
        let map: BundleMap = serde_json::from_slice(json).map_err(|e| BundleError::Malformed {
            reason: e.to_string(),
        })?;
        let mut set = BundleSet::new();
        for (key, value) in map.trust_domains.0 {
            let td: TrustDomain =
                key.parse()
                    .map_err(|source| BundleError::InvalidTrustDomain {
                        key: key.chars().take(64).collect(),
                        source,
                    })?;
            if set.get(&td).is_some() {
                // The same key twice, or two spellings of one trust domain.
                return Err(BundleError::DuplicateTrustDomain { trust_domain: td });
            }
            set.insert(SpiffeBundle::from_json_value(td, value)?);
        }
        Ok(set)
    }

    /// Serializes a bundle map, without per-bundle refresh hints (MAP-3).
    pub fn to_bundle_map(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.bundles.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let tds: Map<String, Value> = entries
            .into_iter()
            .map(|(td, b)| (td.as_str().to_owned(), b.to_json_value(false)))
            .collect();
        let mut doc = Map::new();
        doc.insert("trust_domains".into(), Value::Object(tds));
        serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
    }
}

impl FromIterator<SpiffeBundle> for BundleSet {
    fn from_iter<I: IntoIterator<Item = SpiffeBundle>>(iter: I) -> Self {
        let mut set = BundleSet::new();
        for b in iter {
            set.insert(b);
        }
        set
    }
}

impl X509BundleLookup for BundleSet {
    fn x509_bundle(&self, td: &TrustDomain) -> Option<&X509Bundle> {
        self.bundles.get(td).map(SpiffeBundle::x509)
    }
}

impl JwtBundleLookup for BundleSet {
    fn jwt_bundle(&self, td: &TrustDomain) -> Option<&JwtBundle> {
        self.bundles.get(td).map(SpiffeBundle::jwt)
    }
}
