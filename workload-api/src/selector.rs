//! [`Selector`] and [`Selectors`]: what attestation learned about a caller.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Why a selector could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text has no `:` between kind and value.
    #[error("selector has no ':' between kind and value")]
    MissingSeparator,
    /// The kind (before the first `:`) is empty.
    #[error("selector kind is empty")]
    EmptyKind,
    /// The value (after the first `:`) is empty.
    #[error("selector value is empty")]
    EmptyValue,
    /// Kind or value contains a control character.
    #[error("selector contains a control character")]
    ControlCharacter,
}

/// One attested property of a caller, written `kind:value`, for example
/// `unix:uid:1000` (kind `unix`, value `uid:1000`).
///
/// ```
/// use workload_api::Selector;
/// let s: Selector = "unix:uid:1000".parse()?;
/// assert_eq!((s.kind(), s.value()), ("unix", "uid:1000"));
/// assert_eq!(s.to_string(), "unix:uid:1000");
/// # Ok::<(), workload_api::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    kind: String,
    value: String,
}

impl Selector {
    /// A selector from its kind (no `:`) and value.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Result<Self, SelectorError> {
        let (kind, value) = (kind.into(), value.into());
        if kind.is_empty() {
            return Err(SelectorError::EmptyKind);
        }
        if kind.contains(':') {
            return Err(SelectorError::MissingSeparator);
        }
        if value.is_empty() {
            return Err(SelectorError::EmptyValue);
        }
        if kind.chars().chain(value.chars()).any(char::is_control) {
            return Err(SelectorError::ControlCharacter);
        }
        Ok(Selector { kind, value })
    }

    /// The kind, e.g. `unix`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The value, e.g. `uid:1000`.
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

/// The set of selectors attested for one caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors(BTreeSet<Selector>);

impl Selectors {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a selector.
    pub fn insert(&mut self, selector: Selector) {
        self.0.insert(selector);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_at_first_colon() {
        let s: Selector = "unix:path:/usr/bin/a:b".parse().unwrap();
        assert_eq!(s.kind(), "unix");
        assert_eq!(s.value(), "path:/usr/bin/a:b");
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        assert_eq!(
            "unix".parse::<Selector>(),
            Err(SelectorError::MissingSeparator)
        );
        assert_eq!(":x".parse::<Selector>(), Err(SelectorError::EmptyKind));
        assert_eq!("unix:".parse::<Selector>(), Err(SelectorError::EmptyValue));
        assert_eq!(
            "unix:uid:\n1".parse::<Selector>(),
            Err(SelectorError::ControlCharacter)
        );
    }

    #[test]
    fn empty_requirement_is_never_satisfied() {
        let set: Selectors = ["unix:uid:0".parse().unwrap()].into_iter().collect();
        assert!(!set.satisfies(&[]));
        assert!(set.satisfies(&["unix:uid:0".parse().unwrap()]));
        assert!(!set.satisfies(&["unix:uid:0".parse().unwrap(), "unix:gid:0".parse().unwrap()]));
    }
}
