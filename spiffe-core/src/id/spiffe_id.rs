//! [`SpiffeId`]: a validated, canonical SPIFFE ID.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use super::parse::{self, PREFIX};
use super::{IdError, MAX_SPIFFE_ID_LEN, TrustDomain};

/// A SPIFFE ID: `spiffe://<trust domain><path>`.
///
/// Parsing follows the SPIFFE ID standard exactly: the scheme and trust domain
/// are case-insensitive and stored lowercase; the path is case-sensitive and
/// kept byte for byte; percent-encoding, userinfo, ports, queries, fragments,
/// empty and dot segments and trailing slashes are refused, each with its own
/// [`IdError`]. Cloning is cheap (one reference count).
///
/// ```
/// use spiffe_core::SpiffeId;
/// let id: SpiffeId = "SPIFFE://Example.org/ns/Default/sa/web".parse()?;
/// assert_eq!(id.to_string(), "spiffe://example.org/ns/Default/sa/web");
/// assert_eq!(id.trust_domain().as_str(), "example.org");
/// assert_eq!(id.path(), "/ns/Default/sa/web");
/// # Ok::<(), spiffe_core::IdError>(())
/// ```
#[derive(Clone)]
pub struct SpiffeId {
    /// The trust domain, whose buffer holds the whole canonical ID.
    td: TrustDomain,
}

impl SpiffeId {
    /// Parses a SPIFFE ID; same as [`str::parse`].
    pub fn new(input: &str) -> Result<Self, IdError> {
        input.parse()
    }

    pub(super) fn from_parts(td: TrustDomain) -> Self {
        SpiffeId { td }
    }

    /// Builds `spiffe://<td>/<seg>/<seg>...` from path segments, each checked
    /// against PATH-2 and PATH-4. Refuses to build an ID over 2048 bytes.
    ///
    /// ```
    /// use spiffe_core::{SpiffeId, TrustDomain};
    /// let td: TrustDomain = "example.org".parse()?;
    /// let id = SpiffeId::from_segments(&td, &["ns", "default", "sa", "web"])?;
    /// assert_eq!(id.as_str(), "spiffe://example.org/ns/default/sa/web");
    /// # Ok::<(), spiffe_core::IdError>(())
    /// ```
    pub fn from_segments(td: &TrustDomain, segments: &[&str]) -> Result<Self, IdError> {
        let mut repr = String::from(td.id_str());
        for seg in segments {
            repr.push('/');
            repr.push_str(seg);
        }
        Self::build(td, repr)
    }

    /// Builds `spiffe://<td><path>` from a path that is empty or starts with
    /// `/`, checked against PATH-1..PATH-4. Refuses to build an ID over 2048
    /// bytes.
    pub fn from_path(td: &TrustDomain, path: &str) -> Result<Self, IdError> {
        let mut repr = String::with_capacity(td.end + path.len());
        repr.push_str(td.id_str());
        repr.push_str(path);
        Self::build(td, repr)
    }

    fn build(td: &TrustDomain, repr: String) -> Result<Self, IdError> {
        parse::path(&repr, td.end)?;
        if repr.len() > MAX_SPIFFE_ID_LEN {
            return Err(IdError::TooLong { len: repr.len() });
        }
        Ok(SpiffeId {
            td: TrustDomain {
                repr: Arc::from(repr),
                end: td.end,
            },
        })
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The path, `""` for the trust domain's own ID, else starting with `/`.
    pub fn path(&self) -> &str {
        &self.td.repr[self.td.end..]
    }

    /// Whether the path is empty (the ID names a trust domain, not a workload).
    pub fn is_root(&self) -> bool {
        self.path().is_empty()
    }

    /// Whether this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.td == *td
    }

    /// The whole canonical ID as text.
    pub fn as_str(&self) -> &str {
        &self.td.repr
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    fn from_str(input: &str) -> Result<Self, IdError> {
        let start = parse::scheme(input)?;
        let auth = parse::authority(input, start)?;
        parse::path(input, auth.end)?;
        let repr: Arc<str> = if auth.has_upper || !input.starts_with(PREFIX) {
            let mut s = String::with_capacity(input.len());
            s.push_str(PREFIX);
            s.push_str(&input[start..auth.end]);
            s.make_ascii_lowercase();
            s.push_str(&input[auth.end..]);
            Arc::from(s)
        } else {
            Arc::from(input)
        };
        Ok(SpiffeId {
            td: TrustDomain {
                repr,
                end: auth.end,
            },
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpiffeId").field(&self.as_str()).finish()
    }
}

impl PartialEq for SpiffeId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SpiffeId {}

impl Hash for SpiffeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpiffeId {
    /// Orders by trust domain, then by path.
    fn cmp(&self, other: &Self) -> Ordering {
        self.td
            .cmp(&other.td)
            .then_with(|| self.path().cmp(other.path()))
    }
}
