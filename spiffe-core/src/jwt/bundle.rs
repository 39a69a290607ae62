//! [`JwtBundle`]: the JWT signing keys of one trust domain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Jwk, JwtError, JwtKey};
use crate::TrustDomain;

/// The JWT authorities of one trust domain, by `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtBundle {
    trust_domain: TrustDomain,
    keys: BTreeMap<String, JwtKey>,
}

/// Finds the JWT bundle of a trust domain.
pub trait JwtBundleLookup {
    /// The bundle of `td`, if one is known.
    fn jwt_bundle(&self, td: &TrustDomain) -> Option<&JwtBundle>;
}

impl JwtBundleLookup for JwtBundle {
    fn jwt_bundle(&self, td: &TrustDomain) -> Option<&JwtBundle> {
        (self.trust_domain == *td).then_some(self)
    }
}

impl<S: std::hash::BuildHasher> JwtBundleLookup
    for std::collections::HashMap<TrustDomain, JwtBundle, S>
{
    fn jwt_bundle(&self, td: &TrustDomain) -> Option<&JwtBundle> {
        self.get(td)
    }
}

impl<T: JwtBundleLookup + ?Sized> JwtBundleLookup for &T {
    fn jwt_bundle(&self, td: &TrustDomain) -> Option<&JwtBundle> {
        (**self).jwt_bundle(td)
    }
}

#[derive(Deserialize, Serialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

impl JwtBundle {
    /// An empty bundle: no JWT-SVID of the trust domain is trusted (BUN-8).
    pub fn new(trust_domain: TrustDomain) -> Self {
        JwtBundle {
            trust_domain,
            keys: BTreeMap::new(),
        }
    }

    /// Parses a plain RFC 7517 JWKS, the form `FetchJWTBundles` delivers:
    /// `use` is not required (JWT-15 note). Keys whose `use` is present and
    /// not `jwt-svid`, and keys of unknown type, are skipped (BUN-7).
    pub fn from_jwks(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, JwtError> {
        let jwks: Jwks = serde_json::from_slice(json).map_err(|e| JwtError::InvalidJwks {
            reason: e.to_string(),
        })?;
        let mut bundle = JwtBundle::new(trust_domain);
        for (index, jwk) in jwks.keys.iter().enumerate() {
            if jwk.use_.as_deref().is_some_and(|u| u != "jwt-svid") {
                continue;
            }
            bundle.add_jwk(index, jwk)?;
        }
        Ok(bundle)
    }

    /// Adds the key of a JWK at position `index`; skips unknown key types.
    pub(crate) fn add_jwk(&mut self, index: usize, jwk: &Jwk) -> Result<(), JwtError> {
        let Some(key) = JwtKey::from_jwk(jwk)? else {
            return Ok(());
        };
        let kid = jwk
            .kid
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or(JwtError::KeyWithoutKid { index })?;
        self.keys.insert(kid, key);
        Ok(())
    }

    /// Adds or replaces a key.
    pub fn insert(&mut self, kid: impl Into<String>, key: JwtKey) {
        self.keys.insert(kid.into(), key);
    }

    /// Removes a key, returning it.
    pub fn remove(&mut self, kid: &str) -> Option<JwtKey> {
        self.keys.remove(kid)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The key with this `kid`.
    pub fn key(&self, kid: &str) -> Option<&JwtKey> {
        self.keys.get(kid)
    }

    /// All keys, by `kid`.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &JwtKey)> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the bundle holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The plain JWKS form (no `use`), as `FetchJWTBundles` sends it.
    pub fn to_jwks(&self) -> Vec<u8> {
        let keys = self.keys.iter().map(|(kid, k)| k.to_jwk(kid)).collect();
        serde_json::to_vec(&Jwks { keys }).unwrap_or_default()
    }
}
