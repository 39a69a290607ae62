//! The registration vocabulary shared by the authority and the Workload API:
//! [`Selector`] (an attested property), [`Selectors`] (what was attested for
//! one caller) and [`EntryId`] (the id of a registration entry), each with
//! one validation rule.
//!
//! ```
//! use spiffe_core::{EntryId, Selector, Selectors};
//! let attested: Selectors = ["unix:uid:1000", "unix:gid:1000"]
//!     .iter()
//!     .map(|s| s.parse())
//!     .collect::<Result<_, _>>()?;
//! let required: Vec<Selector> = vec!["unix:uid:1000".parse()?];
//! assert!(attested.satisfies(&required));
//! let id = EntryId::new("api-server")?;
//! assert_eq!(id.as_str(), "api-server");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest selector type, and longest selector value, accepted (bytes).
pub const MAX_SELECTOR_LEN: usize = 1024;

/// Longest [`EntryId`] accepted (characters, all ASCII).
pub const MAX_ENTRY_ID_LEN: usize = 64;

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text has no `:` between type and value.
    #[error("selector has no ':' between type and value")]
    MissingSeparator,
    /// The type (before the first `:`) is empty.
    #[error("selector type is empty")]
    EmptyKind,
    /// The value (after the first `:`) is empty.
    #[error("selector value is empty")]
    EmptyValue,
    /// The type holds a character outside `[a-z0-9_-]`.
    #[error("selector type must be made of [a-z0-9_-]")]
    InvalidKind,
    /// The type or the value is longer than [`MAX_SELECTOR_LEN`].
    #[error("selector {part} is {len} bytes, more than the {MAX_SELECTOR_LEN} allowed")]
    TooLong {
        /// `type` or `value`.
        part: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The value holds a control character.
    #[error("selector value holds a control character")]
    ControlCharacter,
}

/// One attested property of a workload or node, written `type:value`, for
/// example `unix:uid:1000` (type `unix`, value `uid:1000`).
///
/// The type is 1 to [`MAX_SELECTOR_LEN`] bytes of `[a-z0-9_-]` (so it holds
/// no `:`); the value is 1 to [`MAX_SELECTOR_LEN`] bytes without control
/// characters and may hold `:`. Text splits at the first `:`.
///
/// ```
/// use spiffe_core::{Selector, SelectorError};
/// let s: Selector = "unix:path:/usr/bin/a:b".parse()?;
/// assert_eq!((s.kind(), s.value()), ("unix", "path:/usr/bin/a:b"));
/// assert_eq!(s.to_string(), "unix:path:/usr/bin/a:b");
/// assert_eq!("Unix:uid:0".parse::<Selector>(), Err(SelectorError::InvalidKind));
/// # Ok::<(), SelectorError>(())
/// ```
///
/// It serializes as `{"kind": ..., "value": ...}` and deserializes from
/// that form or from the `type:value` string, validated either way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Selector {
    kind: String,
    value: String,
}

impl Selector {
    /// A selector from its type and value.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Result<Self, SelectorError> {
        let (kind, value) = (kind.into(), value.into());
        if kind.is_empty() {
            return Err(SelectorError::EmptyKind);
        }
        if value.is_empty() {
            return Err(SelectorError::EmptyValue);
        }
        for (part, text) in [("type", &kind), ("value", &value)] {
            if text.len() > MAX_SELECTOR_LEN {
                return Err(SelectorError::TooLong {
                    part,
                    len: text.len(),
                });
            }
        }
        if !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(SelectorError::InvalidKind);
        }
        if value.chars().any(char::is_control) {
            return Err(SelectorError::ControlCharacter);
        }
        Ok(Selector { kind, value })
    }

    /// The selector type (`unix`, `k8s`, `join_token`, ...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s.split_once(':').ok_or(SelectorError::MissingSeparator)?;
        Selector::new(kind, value)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Parts { kind: String, value: String },
        }
        match Wire::deserialize(d)? {
            Wire::Text(s) => s.parse(),
            Wire::Parts { kind, value } => Selector::new(kind, value),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// The set of selectors attested for one caller (sorted, no duplicates).
///
/// ```
/// use spiffe_core::{Selector, Selectors};
/// let mut set = Selectors::new();
/// set.insert("unix:uid:0".parse()?);
/// assert!(set.satisfies(&["unix:uid:0".parse()?]));
/// assert!(!set.satisfies(&[]), "an empty requirement names nothing");
/// # Ok::<(), spiffe_core::SelectorError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Selectors(BTreeSet<Selector>);

impl Selectors {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a selector; false if it was already there.
    pub fn insert(&mut self, selector: Selector) -> bool {
        self.0.insert(selector)
    }

    /// Whether `selector` was attested.
    pub fn contains(&self, selector: &Selector) -> bool {
        self.0.contains(selector)
    }

    /// Whether every selector of `required` was attested. An empty
    /// `required` list is never satisfied: an entry must name something.
    pub fn satisfies(&self, required: &[Selector]) -> bool {
        !required.is_empty() && required.iter().all(|s| self.0.contains(s))
    }

    /// The selectors in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &Selector> {
        self.0.iter()
    }

    /// How many selectors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether attestation found nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Selector> for Selectors {
    fn from_iter<I: IntoIterator<Item = Selector>>(iter: I) -> Self {
        Selectors(iter.into_iter().collect())
    }
}

impl Extend<Selector> for Selectors {
    fn extend<I: IntoIterator<Item = Selector>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl<'a> IntoIterator for &'a Selectors {
    type Item = &'a Selector;
    type IntoIter = std::collections::btree_set::Iter<'a, Selector>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Selectors {
    type Item = Selector;
    type IntoIter = std::collections::btree_set::IntoIter<Selector>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Why an entry id was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryIdError {
    /// The id is empty.
    #[error("entry id is empty")]
    Empty,
    /// The id is longer than [`MAX_ENTRY_ID_LEN`].
    #[error("entry id is {len} bytes, more than the {MAX_ENTRY_ID_LEN} allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The id holds a character outside `[A-Za-z0-9_-]`.
    #[error("entry id must be made of [A-Za-z0-9_-]")]
    InvalidCharacter,
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// The id of a registration entry: 1 to [`MAX_ENTRY_ID_LEN`] characters of
/// `[A-Za-z0-9_-]`, chosen by the operator or [random](EntryId::random).
///
/// ```
/// use spiffe_core::{EntryId, EntryIdError};
/// let id: EntryId = "db-primary_1".parse()?;
/// assert_eq!(id.to_string(), "db-primary_1");
/// assert_eq!(EntryId::new("a/b"), Err(EntryIdError::InvalidCharacter));
/// assert_eq!(EntryId::random()?.as_str().len(), 32);
/// # Ok::<(), EntryIdError>(())
/// ```
///
/// It serializes as a string and is validated when deserialized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntryId(String);

impl EntryId {
    /// An id chosen by the caller.
    pub fn new(id: &str) -> Result<Self, EntryIdError> {
        Self::check(id)?;
        Ok(EntryId(id.to_owned()))
    }

    fn check(id: &str) -> Result<(), EntryIdError> {
        if id.is_empty() {
            return Err(EntryIdError::Empty);
        }
        if id.len() > MAX_ENTRY_ID_LEN {
            return Err(EntryIdError::TooLong { len: id.len() });
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(EntryIdError::InvalidCharacter);
        }
        Ok(())
    }

    /// A random id: 32 lowercase hex digits (128 bits from the system
    /// generator, through aws-lc-rs).
    pub fn random() -> Result<Self, EntryIdError> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| EntryIdError::Random)?;
        let hex = bytes.iter().fold(String::with_capacity(32), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        });
        Ok(EntryId(hex))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EntryId {
    type Err = EntryIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntryId::new(s)
    }
}

impl TryFrom<String> for EntryId {
    type Error = EntryIdError;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::check(&id)?;
        Ok(EntryId(id))
    }
}

impl From<EntryId> for String {
    fn from(id: EntryId) -> Self {
        id.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        s.parse().unwrap()
    }

    #[test]
    fn selector_splits_at_the_first_colon_and_round_trips() {
        let s = sel("unix:path:/usr/bin/a:b");
        assert_eq!(s.kind(), "unix");
        assert_eq!(s.value(), "path:/usr/bin/a:b");
        assert_eq!(s.to_string().parse::<Selector>().unwrap(), s);
        assert_eq!(Selector::new("k8s", "ns:prod").unwrap(), sel("k8s:ns:prod"));
        assert!(Selector::new("join_token", "ab-1").is_ok());
    }

    #[test]
    fn malformed_selectors_are_refused_with_the_reason() {
        let cases = [
            ("unix", SelectorError::MissingSeparator),
            (":x", SelectorError::EmptyKind),
            ("unix:", SelectorError::EmptyValue),
            ("Unix:uid:0", SelectorError::InvalidKind),
            ("un ix:uid:0", SelectorError::InvalidKind),
            ("ünix:uid:0", SelectorError::InvalidKind),
            ("unix:uid:\n1", SelectorError::ControlCharacter),
            ("unix:uid:\u{7f}", SelectorError::ControlCharacter),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Selector>(), Err(want), "{text:?}");
        }
        // The type cannot hold ':' when built from parts.
        assert_eq!(Selector::new("a:b", "c"), Err(SelectorError::InvalidKind));
    }

    #[test]
    fn selector_parts_are_capped_at_max_selector_len() {
        let long = "a".repeat(MAX_SELECTOR_LEN);
        assert!(Selector::new(long.as_str(), long.as_str()).is_ok());
        let over = "a".repeat(MAX_SELECTOR_LEN + 1);
        assert_eq!(
            Selector::new(over.as_str(), "v"),
            Err(SelectorError::TooLong {
                part: "type",
                len: MAX_SELECTOR_LEN + 1
            })
        );
        assert_eq!(
            Selector::new("k", over.as_str()),
            Err(SelectorError::TooLong {
                part: "value",
                len: MAX_SELECTOR_LEN + 1
            })
        );
    }

    #[test]
    fn selector_serde_accepts_both_forms_and_validates() {
        let s = sel("unix:uid:1000");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"kind":"unix","value":"uid:1000"}"#);
        assert_eq!(serde_json::from_str::<Selector>(&json).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<Selector>(r#""unix:uid:1000""#).unwrap(),
            s
        );
        for bad in [
            r#"{"kind":"UNIX","value":"x"}"#,
            r#"{"kind":"unix","value":""}"#,
            r#""nocolon""#,
            r#""unix:a\u0000b""#,
            "42",
        ] {
            assert!(serde_json::from_str::<Selector>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_requirement_is_never_satisfied() {
        let set: Selectors = [sel("unix:uid:0"), sel("unix:gid:0")].into_iter().collect();
        assert!(!set.satisfies(&[]));
        assert!(!Selectors::new().satisfies(&[]));
        assert!(set.satisfies(&[sel("unix:uid:0")]));
        assert!(set.satisfies(&[sel("unix:uid:0"), sel("unix:gid:0")]));
        assert!(!set.satisfies(&[sel("unix:uid:0"), sel("unix:gid:1")]));
    }

    #[test]
    fn selectors_are_a_sorted_set_and_serialize_as_a_list() {
        let mut set = Selectors::new();
        assert!(set.insert(sel("unix:uid:1")));
        assert!(set.insert(sel("k8s:ns:a")));
        assert!(!set.insert(sel("unix:uid:1")));
        assert_eq!(set.len(), 2);
        assert!(set.contains(&sel("k8s:ns:a")));
        let kinds: Vec<&str> = set.iter().map(Selector::kind).collect();
        assert_eq!(kinds, ["k8s", "unix"]);
        let json = serde_json::to_string(&set).unwrap();
        assert!(json.starts_with('['), "{json}");
        assert_eq!(serde_json::from_str::<Selectors>(&json).unwrap(), set);
        assert!(serde_json::from_str::<Selectors>(r#"["bad"]"#).is_err());
    }

    #[test]
    fn entry_id_rules() {
        assert!(EntryId::new("a").is_ok());
        assert!(EntryId::new("Az09_-").is_ok());
        let max = "a".repeat(MAX_ENTRY_ID_LEN);
        assert!(EntryId::new(&max).is_ok());
        assert_eq!(EntryId::new(""), Err(EntryIdError::Empty));
        assert_eq!(
            EntryId::new(&format!("{max}a")),
            Err(EntryIdError::TooLong {
                len: MAX_ENTRY_ID_LEN + 1
            })
        );
        for bad in ["a b", "a/b", "a.b", "a:b", "é", "a\n"] {
            assert_eq!(
                EntryId::new(bad),
                Err(EntryIdError::InvalidCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn random_entry_ids_are_valid_and_distinct() {
        let a = EntryId::random().unwrap();
        let b = EntryId::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(EntryId::new(a.as_str()).unwrap(), a);
    }

    #[test]
    fn entry_id_serde_is_a_validated_string() {
        let id = EntryId::new("web").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""web""#);
        assert_eq!(serde_json::from_str::<EntryId>(r#""web""#).unwrap(), id);
        assert!(serde_json::from_str::<EntryId>(r#""a/b""#).is_err());
        assert!(serde_json::from_str::<EntryId>(r#""""#).is_err());
    }
}
