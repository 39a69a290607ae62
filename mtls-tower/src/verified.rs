//! [`VerifiedPeers`]: the verifier's own results, handed to the connection.
//!
//! rustls gives a verifier no way to attach what it established to the
//! connection: after the handshake only the peer's certificates are left.
//! Re-reading the identity from the leaf would be a second, unverified
//! parse. Instead each verifier records the [`PeerIdentity`] it produced,
//! keyed by the leaf's DER, and the acceptor or connector looks the leaf
//! of its completed handshake up here. The identity is a function of the
//! leaf alone, so whichever handshake recorded it, the value is the one
//! verification produced for that certificate.
//!
//! The store is bounded: two generations of at most `capacity` leaves
//! each; when the newer fills, the older is dropped. A handshake's entry
//! is looked up moments after it is recorded, so it is lost only if more
//! than `capacity` other distinct leaves are verified in between; a miss
//! refuses the connection (fail closed), never guesses.

use std::collections::HashMap;
use std::sync::Mutex;

use rustls_pki_types::CertificateDer;
use spiffe_core::PeerIdentity;

use crate::error::PeerRejected;

/// Distinct leaves kept per generation.
const DEFAULT_CAPACITY: usize = 4096;

#[derive(Default)]
struct Generations {
    current: HashMap<Box<[u8]>, PeerIdentity>,
    previous: HashMap<Box<[u8]>, PeerIdentity>,
    /// The last rejection per server name, on the client side: rustls
    /// hands the connector only the alert-sized error, so the connector
    /// takes the full reason from here.
    rejected: HashMap<String, PeerRejected>,
}

/// Verified identities by leaf certificate, shared by one config's
/// verifier and the code that completes its handshakes.
pub(crate) struct VerifiedPeers {
    capacity: usize,
    inner: Mutex<Generations>,
}

impl VerifiedPeers {
    pub(crate) fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        VerifiedPeers {
            capacity: capacity.max(1),
            inner: Mutex::new(Generations::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps stay consistent even if a holder panicked: every
        // operation is a single insert, lookup or swap.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what verification established for `leaf`.
    pub(crate) fn record(&self, leaf: &CertificateDer<'_>, peer: PeerIdentity) {
        let mut g = self.lock();
        if g.current.contains_key(leaf.as_ref()) {
            return;
        }
        if g.current.len() >= self.capacity {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(leaf.as_ref().into(), peer);
    }

    /// The identity verification produced for `leaf`, if it is still held.
    pub(crate) fn get(&self, leaf: &CertificateDer<'_>) -> Option<PeerIdentity> {
        let g = self.lock();
        g.current
            .get(leaf.as_ref())
            .or_else(|| g.previous.get(leaf.as_ref()))
            .cloned()
    }

    /// Records why the server reached as `server_name` was rejected.
    pub(crate) fn reject(&self, server_name: &str, why: PeerRejected) {
        let mut g = self.lock();
        if g.rejected.len() >= self.capacity && !g.rejected.contains_key(server_name) {
            g.rejected.clear();
        }
        g.rejected.insert(server_name.to_owned(), why);
    }

    /// Why the server reached as `server_name` was last rejected; the
    /// record is removed.
    pub(crate) fn take_rejection(&self, server_name: &str) -> Option<PeerRejected> {
        self.lock().rejected.remove(server_name)
    }

    /// The identity of an established connection's peer.
    pub(crate) fn of_connection(&self, conn: &rustls::CommonState) -> Option<PeerIdentity> {
        self.get(conn.peer_certificates()?.first()?)
    }
}

impl std::fmt::Debug for VerifiedPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("VerifiedPeers")
            .field("held", &(g.current.len() + g.previous.len()))
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn verified(ca: &test_support::TestCa, id: &str) -> (CertificateDer<'static>, PeerIdentity) {
        let leaf = ca.leaf(id);
        let bundle =
            spiffe_core::X509Bundle::new("example.org".parse().unwrap(), vec![ca.root_cert()])
                .unwrap();
        let peer =
            spiffe_core::x509::verify_x509_svid_full(&leaf.chain, &bundle, SystemTime::now())
                .unwrap();
        (leaf.chain[0].clone(), peer)
    }

    #[test]
    fn an_unrecorded_leaf_has_no_identity() {
        let ca = test_support::TestCa::new("example.org");
        let peers = VerifiedPeers::new();
        let (leaf, peer) = verified(&ca, "spiffe://example.org/a");
        let (other, _) = verified(&ca, "spiffe://example.org/b");
        peers.record(&leaf, peer.clone());
        assert_eq!(peers.get(&leaf), Some(peer));
        assert_eq!(peers.get(&other), None);
    }

    #[test]
    fn the_store_stays_bounded_and_keeps_the_newest_generation() {
        let ca = test_support::TestCa::new("example.org");
        let peers = VerifiedPeers::with_capacity(2);
        let leaves: Vec<_> = (0..5)
            .map(|i| verified(&ca, &format!("spiffe://example.org/w{i}")))
            .collect();
        for (leaf, peer) in &leaves {
            peers.record(leaf, peer.clone());
        }
        // Generations of two: w4 alone in current, w2 and w3 in previous.
        let held: Vec<bool> = leaves.iter().map(|(l, _)| peers.get(l).is_some()).collect();
        assert_eq!(held, [false, false, true, true, true]);
        let g = peers.lock();
        assert!(g.current.len() + g.previous.len() <= 4);
    }
}
