//! [`VerifiedChains`]: chain verifications reused while nothing they depend
//! on has changed.
//!
//! Validating a peer's X509-SVID chain costs a CA signature check per
//! certificate (an ECDSA P-256 verification is about a tenth of a server's
//! CPU per full handshake) and a parse of each certificate. A mesh peer
//! presents the same chain on every connection until its SVID rotates, so
//! the verifier keeps the [`PeerIdentity`] each chain produced and reuses it
//! when, and only when, everything the answer depends on is unchanged:
//!
//! - the chain: the SHA-256 of its certificates, each prefixed by its
//!   length, in the order presented;
//! - the trust bundles: the very snapshot ([`Arc`] identity) the chain was
//!   verified against; any change of the bundle source (a rotation, a
//!   federated update, a removed authority) yields a new snapshot and
//!   empties the cache;
//! - the local trust domain, which decides what the trust policy admits;
//! - the time: a hit needs the current time inside the validity period of
//!   every certificate on the verified path ([`PeerIdentity::path_valid`]).
//!
//! Only successes are kept; a refused chain is verified again each time
//! (and reports what refused it). The handshake signature
//! (CertificateVerify), which proves the peer holds the leaf's key, is
//! checked on every connection by rustls, cache or not. Authorization
//! against the verifier's authorizer also runs on every connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use aws_lc_rs::digest;
use rustls_pki_types::CertificateDer;
use spiffe_core::{BundleSet, PeerIdentity, TrustDomain};

/// Entries a verifier keeps unless configured otherwise.
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

/// What a chain is looked up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ChainKey([u8; 32]);

impl ChainKey {
    /// SHA-256 over each certificate's length (8 bytes, big-endian) and DER,
    /// leaf first: two different chains cannot share a key without a
    /// SHA-256 collision.
    pub(crate) fn of(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for cert in std::iter::once(end_entity).chain(intermediates) {
            ctx.update(&(cert.len() as u64).to_be_bytes());
            ctx.update(cert);
        }
        let mut key = [0; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        ChainKey(key)
    }
}

/// What the entries were verified against, and the entries.
#[derive(Default)]
struct State {
    /// Held, so that the address compared cannot be reused by another set.
    bundles: Option<Arc<BundleSet>>,
    local: Option<TrustDomain>,
    entries: HashMap<ChainKey, PeerIdentity>,
}

impl State {
    fn verified_against(&self, bundles: &Arc<BundleSet>, local: Option<&TrustDomain>) -> bool {
        self.bundles
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(b, bundles))
            && self.local.as_ref() == local
    }
}

/// Verified chains of one verifier, bounded in number.
pub(crate) struct VerifiedChains {
    capacity: usize,
    state: Mutex<State>,
}

impl VerifiedChains {
    /// A cache of at most `capacity` chains; 0 turns it off.
    pub(crate) fn new(capacity: usize) -> Self {
        VerifiedChains {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether the cache keeps anything (capacity above 0).
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The identity `key`'s chain produced against exactly `bundles` with
    /// this local trust domain, if its path is valid at `now`.
    pub(crate) fn get(
        &self,
        key: &ChainKey,
        bundles: &Arc<BundleSet>,
        local: Option<&TrustDomain>,
        now: SystemTime,
    ) -> Option<PeerIdentity> {
        if !self.enabled() {
            return None;
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.verified_against(bundles, local) {
            return None;
        }
        state
            .entries
            .get(key)
            .filter(|peer| peer.path_valid_at(now))
            .cloned()
    }

    /// Keeps what `key`'s chain verified to against `bundles`. Entries
    /// verified against other bundles or another local trust domain are
    /// dropped first; at capacity, expired paths go, then an arbitrary one.
    pub(crate) fn insert(
        &self,
        key: ChainKey,
        bundles: &Arc<BundleSet>,
        local: Option<&TrustDomain>,
        now: SystemTime,
        peer: PeerIdentity,
    ) {
        if !self.enabled() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.verified_against(bundles, local) {
            state.entries.clear();
            state.bundles = Some(bundles.clone());
            state.local = local.cloned();
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&key) {
            state.entries.retain(|_, p| p.path_valid_at(now));
            if state.entries.len() >= self.capacity
                && let Some(any) = state.entries.keys().next().copied()
            {
                state.entries.remove(&any);
            }
        }
        state.entries.insert(key, peer);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

impl fmt::Debug for VerifiedChains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedChains")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spiffe_core::X509Bundle;
    use spiffe_core::x509::verify_x509_svid_full;
    use test_support::TestCa;

    use super::*;

    struct Fixture {
        ca: TestCa,
        bundles: Arc<BundleSet>,
        td: TrustDomain,
    }

    fn fixture() -> Fixture {
        let ca = TestCa::new("example.org");
        let mut set = BundleSet::new();
        set.insert_x509(
            X509Bundle::new("example.org".parse().unwrap(), vec![ca.root_cert()]).unwrap(),
        );
        Fixture {
            ca,
            bundles: Arc::new(set),
            td: "example.org".parse().unwrap(),
        }
    }

    /// A verified chain's key and identity.
    fn verified(f: &Fixture, id: &str) -> (ChainKey, PeerIdentity) {
        let leaf = f.ca.leaf(id);
        let peer = verify_x509_svid_full(&leaf.chain, &*f.bundles, SystemTime::now()).unwrap();
        (ChainKey::of(&leaf.chain[0], &leaf.chain[1..]), peer)
    }

    #[test]
    fn keys_tell_apart_order_and_boundaries_of_a_chain() {
        let f = fixture();
        let inter = f.ca.intermediate(test_support::CaSpec::new("example.org"));
        let leaf = inter.leaf("spiffe://example.org/w");
        let (ee, rest) = (&leaf.chain[0], &leaf.chain[1..]);
        let key = ChainKey::of(ee, rest);
        assert!(key == ChainKey::of(ee, rest));
        assert!(key != ChainKey::of(ee, &[]));
        assert!(key != ChainKey::of(&rest[0], std::slice::from_ref(ee)));
        // The same bytes cut elsewhere are another chain.
        let mut joined = ee.to_vec();
        joined.extend_from_slice(&rest[0]);
        assert!(key != ChainKey::of(&CertificateDer::from(joined), &[]));
    }

    #[test]
    fn a_hit_needs_the_same_bundles_local_domain_and_a_valid_path() {
        let f = fixture();
        let cache = VerifiedChains::new(8);
        let (key, peer) = verified(&f, "spiffe://example.org/w");
        let now = SystemTime::now();
        assert_eq!(cache.get(&key, &f.bundles, Some(&f.td), now), None);
        cache.insert(key, &f.bundles, Some(&f.td), now, peer.clone());
        assert_eq!(
            cache.get(&key, &f.bundles, Some(&f.td), now),
            Some(peer.clone())
        );
        // Equal content in another snapshot is another set of bundles.
        let copy = Arc::new((*f.bundles).clone());
        assert_eq!(cache.get(&key, &copy, Some(&f.td), now), None);
        let other: TrustDomain = "other.org".parse().unwrap();
        assert_eq!(cache.get(&key, &f.bundles, Some(&other), now), None);
        assert_eq!(cache.get(&key, &f.bundles, None, now), None);
        let (_, until) = peer.path_valid();
        assert_eq!(
            cache.get(
                &key,
                &f.bundles,
                Some(&f.td),
                until + Duration::from_secs(1)
            ),
            None
        );
        let (from, _) = peer.path_valid();
        assert_eq!(
            cache.get(&key, &f.bundles, Some(&f.td), from - Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn new_bundles_empty_the_cache() {
        let f = fixture();
        let cache = VerifiedChains::new(8);
        let now = SystemTime::now();
        let (a, peer_a) = verified(&f, "spiffe://example.org/a");
        cache.insert(a, &f.bundles, Some(&f.td), now, peer_a);
        let newer = Arc::new((*f.bundles).clone());
        let (b, peer_b) = verified(&f, "spiffe://example.org/b");
        cache.insert(b, &newer, Some(&f.td), now, peer_b.clone());
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&a, &newer, Some(&f.td), now), None);
        assert_eq!(cache.get(&b, &newer, Some(&f.td), now), Some(peer_b));
    }

    #[test]
    fn the_cache_never_outgrows_its_capacity_and_drops_expired_paths_first() {
        let f = fixture();
        let cache = VerifiedChains::new(3);
        let now = SystemTime::now();
        let chains: Vec<_> = (0..5)
            .map(|i| verified(&f, &format!("spiffe://example.org/w{i}")))
            .collect();
        for (key, peer) in &chains[..3] {
            cache.insert(*key, &f.bundles, Some(&f.td), now, peer.clone());
        }
        assert_eq!(cache.len(), 3);
        // An hour past the end of every path: the three expired ones go.
        let (_, until) = chains[2].1.path_valid();
        let later = until + Duration::from_secs(3600);
        let (k3, p3) = &chains[3];
        cache.insert(*k3, &f.bundles, Some(&f.td), later, p3.clone());
        assert_eq!(cache.len(), 1);
        // At capacity with every entry valid, one arbitrary entry makes room.
        for (key, peer) in &chains[..2] {
            cache.insert(*key, &f.bundles, Some(&f.td), now, peer.clone());
        }
        assert_eq!(cache.len(), 3);
        let (k4, p4) = &chains[4];
        cache.insert(*k4, &f.bundles, Some(&f.td), now, p4.clone());
        assert_eq!(cache.len(), 3);
        assert_eq!(
            cache.get(k4, &f.bundles, Some(&f.td), now),
            Some(p4.clone())
        );
        // Re-inserting a present chain at capacity evicts nothing.
        cache.insert(*k4, &f.bundles, Some(&f.td), now, p4.clone());
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let f = fixture();
        let cache = VerifiedChains::new(0);
        let (key, peer) = verified(&f, "spiffe://example.org/w");
        let now = SystemTime::now();
        cache.insert(key, &f.bundles, Some(&f.td), now, peer);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.get(&key, &f.bundles, Some(&f.td), now), None);
    }
}
