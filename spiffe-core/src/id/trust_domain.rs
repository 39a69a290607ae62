//! [`TrustDomain`]: the name of a SPIFFE trust domain.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use super::parse::{self, PREFIX};
use super::{IdError, SpiffeId};

/// A trust-domain name, such as `example.org`, stored in canonical lowercase.
///
/// Parsing accepts the bare name or its SPIFFE ID form (`spiffe://example.org`);
/// a full SPIFFE ID with a path is validated whole and its trust domain kept.
/// The scheme and name are case-insensitive on input (ID-5); the stored name is
/// always lowercase, so equality is on the canonical form.
///
/// ```
/// use spiffe_core::TrustDomain;
/// let td: TrustDomain = "Example.ORG".parse()?;
/// assert_eq!(td.as_str(), "example.org");
/// assert_eq!(td.to_string(), "example.org");
/// assert_eq!(td.id_str(), "spiffe://example.org");
/// # Ok::<(), spiffe_core::IdError>(())
/// ```
#[derive(Clone)]
pub struct TrustDomain {
    /// Canonical text starting with `spiffe://`; the name ends at `end`.
    /// When taken from a [`SpiffeId`], the path follows in the same buffer,
    /// so extracting the trust domain of an ID never allocates.
    pub(super) repr: Arc<str>,
    pub(super) end: usize,
}

impl TrustDomain {
    /// Parses a trust-domain name or a SPIFFE ID; same as [`str::parse`].
    pub fn new(input: &str) -> Result<Self, IdError> {
        input.parse()
    }

    /// The canonical (lowercase) name, without scheme: `example.org`.
    pub fn as_str(&self) -> &str {
        &self.repr[PREFIX.len()..self.end]
    }

    /// The trust domain's own SPIFFE ID as text: `spiffe://example.org`.
    pub fn id_str(&self) -> &str {
        &self.repr[..self.end]
    }

    /// The trust domain's own SPIFFE ID (root path).
    pub fn to_spiffe_id(&self) -> SpiffeId {
        let repr = if self.repr.len() == self.end {
            self.repr.clone()
        } else {
            Arc::from(self.id_str())
        };
        SpiffeId::from_parts(TrustDomain {
            repr,
            end: self.end,
        })
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;

    fn from_str(input: &str) -> Result<Self, IdError> {
        if input.contains(':') && input.contains('/') || parse::scheme(input).is_ok() {
            let id: SpiffeId = input.parse()?;
            return Ok(id.trust_domain().clone());
        }
        if input.is_empty() {
            return Err(IdError::EmptyTrustDomain);
        }
        let auth = parse::authority(input, 0)?;
        if auth.end != input.len() {
            // A `/` after a bare name: not a trust domain.
            return Err(IdError::TrustDomainChar {
                byte: b'/',
                position: auth.end,
            });
        }
        let mut repr = String::with_capacity(PREFIX.len() + input.len());
        repr.push_str(PREFIX);
        repr.push_str(input);
        if auth.has_upper {
            repr.make_ascii_lowercase();
        }
        Ok(TrustDomain {
            end: repr.len(),
            repr: Arc::from(repr),
        })
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TrustDomain").field(&self.as_str()).finish()
    }
}

impl PartialEq for TrustDomain {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TrustDomain {}

impl Hash for TrustDomain {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for TrustDomain {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TrustDomain {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}
