//! Node attestation: the [`NodeAttestor`] trait and join tokens.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use spiffe_core::{Selector, Selectors, SpiffeId, TrustDomain};
use zeroize::Zeroizing;

use crate::keys;
use crate::{Clock, Entitlement, NodeStore, StoreError, TokenUse};

/// A node whose identity an attestor established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedNode {
    /// The node's SPIFFE ID, under the reserved `/node` path.
    pub spiffe_id: SpiffeId,
    /// The attestor that vouched for it (`join_token`, ...).
    pub attestor: String,
    /// Selectors describing the node (matched by node alias entries).
    pub selectors: Selectors,
    /// When it was attested.
    pub attested_at: SystemTime,
}

impl AttestedNode {
    /// What the node may be issued: its own node SVID.
    pub fn entitlement(&self) -> Entitlement {
        Entitlement::new(self.spiffe_id.clone())
    }
}

/// Why attestation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The payload is not valid for this attestor.
    #[error("malformed attestation payload for {attestor}")]
    Malformed {
        /// The attestor.
        attestor: &'static str,
    },
    /// The evidence does not chain to a trusted CA, or its proof does not
    /// verify.
    #[error("{attestor} evidence refused: {reason}")]
    Untrusted {
        /// The attestor.
        attestor: &'static str,
        /// Why.
        reason: String,
    },
    /// This attestor's evidence must be bound to a CSR
    /// ([`NodeAttestor::attest_bound`]).
    #[error("{attestor} evidence must be bound to the node's CSR")]
    Unbound {
        /// The attestor.
        attestor: &'static str,
    },
    /// The join token was never issued or has already been used.
    #[error("unknown or already used join token")]
    UnknownToken,
    /// The join token expired.
    #[error("join token expired at {expired_at:?}")]
    Expired {
        /// Its expiry.
        expired_at: SystemTime,
    },
    /// A token TTL of zero was asked for.
    #[error("join token TTL must not be zero")]
    ZeroTtl,
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Establishes a node's identity from evidence it presents.
///
/// Each attestor turns an opaque payload (a join token, an x509pop
/// signature over a server nonce, a Kubernetes projected service account
/// token, ...) into an [`AttestedNode`] with a SPIFFE ID under `/node` and
/// selectors. Attestors that need a challenge can carry the nonce in the
/// payload they define.
pub trait NodeAttestor: Send + Sync + fmt::Debug {
    /// The attestor's name, used in node IDs and selectors.
    fn name(&self) -> &'static str;

    /// Verifies `payload` and returns the node it proves.
    fn attest(&self, payload: &[u8]) -> Result<AttestedNode, AttestError>;

    /// Like [`NodeAttestor::attest`], for evidence that must cover
    /// `bound_to` (the CSR the node sends with it), so that a replayed
    /// proof cannot obtain an SVID for another key. Attestors whose
    /// evidence is a signature override this; the default ignores the
    /// binding.
    fn attest_bound(&self, payload: &[u8], bound_to: &[u8]) -> Result<AttestedNode, AttestError> {
        let _ = bound_to;
        self.attest(payload)
    }
}

/// A join token secret, shown once to the operator. `Debug` redacts it.
pub struct JoinToken {
    secret: Zeroizing<String>,
    /// When it stops being accepted.
    pub expires_at: SystemTime,
    selector: Selector,
}

impl JoinToken {
    /// The token to hand to the node.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The selector the node that attests with this token will carry
    /// (`join_token:` and the first 32 hex digits of the token's SHA-256):
    /// what a node alias entry names to give that node another SPIFFE ID.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }
}

/// The short form of a hashed token that names the node, and its selector.
fn token_selector(hashed: &str) -> Result<(&str, Selector), AttestError> {
    let short = hashed.get(..32).unwrap_or(hashed);
    let selector = Selector::new(JOIN_TOKEN, short).map_err(|_| AttestError::Malformed {
        attestor: JOIN_TOKEN,
    })?;
    Ok((short, selector))
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Join-token attestation: single-use tokens with an expiry, stored only
/// as SHA-256 hashes. A node presenting a valid token becomes
/// `spiffe://<td>/node/join_token/<first 32 hex digits of the hash>`.
#[derive(Debug)]
pub struct JoinTokenAttestor {
    trust_domain: TrustDomain,
    store: Arc<dyn NodeStore>,
    clock: Arc<dyn Clock>,
}

/// The attestor name of [`JoinTokenAttestor`].
pub const JOIN_TOKEN: &str = "join_token";

fn hash(token: &str) -> String {
    keys::hex(digest(&SHA256, token.as_bytes()).as_ref())
}

impl JoinTokenAttestor {
    /// An attestor for `trust_domain` keeping tokens in `store`.
    pub fn new(
        trust_domain: TrustDomain,
        store: Arc<dyn NodeStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        JoinTokenAttestor {
            trust_domain,
            store,
            clock,
        }
    }

    /// Creates a token valid for `ttl`. Only its hash is stored.
    pub fn create_token(&self, ttl: Duration) -> Result<JoinToken, AttestError> {
        if ttl.is_zero() {
            return Err(AttestError::ZeroTtl);
        }
        let bytes = keys::random::<32>().ok_or(AttestError::Random)?;
        let secret = Zeroizing::new(keys::hex(&bytes));
        let expires_at = self.clock.now() + ttl;
        let hashed = hash(&secret);
        let (_, selector) = token_selector(&hashed)?;
        self.store.create_join_token(&hashed, expires_at)?;
        Ok(JoinToken {
            secret,
            expires_at,
            selector,
        })
    }
}

impl NodeAttestor for JoinTokenAttestor {
    fn name(&self) -> &'static str {
        JOIN_TOKEN
    }

    fn attest(&self, payload: &[u8]) -> Result<AttestedNode, AttestError> {
        let token = std::str::from_utf8(payload)
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(AttestError::Malformed {
                attestor: JOIN_TOKEN,
            })?;
        let hashed = hash(token);
        let now = self.clock.now();
        let (short, selector) = token_selector(&hashed)?;
        let spiffe_id = SpiffeId::from_segments(&self.trust_domain, &["node", JOIN_TOKEN, short])
            .map_err(|_| AttestError::Malformed {
            attestor: JOIN_TOKEN,
        })?;
        let node = AttestedNode {
            spiffe_id,
            attestor: JOIN_TOKEN.to_owned(),
            selectors: std::iter::once(selector).collect(),
            attested_at: now,
        };
        // One transaction: the token is used up and the node recorded together.
        match self.store.consume_join_token(&hashed, now, &node)? {
            TokenUse::Consumed => {}
            TokenUse::Expired(expired_at) => return Err(AttestError::Expired { expired_at }),
            _ => return Err(AttestError::UnknownToken),
        }
        Ok(node)
    }
}
