//! Errors raised while loading and validating policy documents.

use std::path::PathBuf;

/// Loading a policy set failed; nothing from the failed load is kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A document is not well-formed YAML (or JSON).
    #[error("{}: document {document}: YAML syntax error: {message}", file.display())]
    Syntax {
        /// The file holding the document.
        file: PathBuf,
        /// Zero-based index of the document in the file.
        document: usize,
        /// The parser's description of the problem.
        message: String,
    },
    /// A document is well-formed but violates the schema or a V-* rule.
    #[error("{}: document {document}: {error}", file.display())]
    Invalid {
        /// The file holding the document.
        file: PathBuf,
        /// Zero-based index of the document in the file.
        document: usize,
        /// What is wrong, and where inside the document.
        error: ValidationError,
    },
}

/// A validation failure at one field of a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {kind}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `spec.rules[0].from[1].source.principals[2]`.
    pub field: String,
    /// Why the field was rejected.
    pub kind: ValidationKind,
}

/// Why a field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationKind {
    /// A required field is missing.
    #[error("required field is missing")]
    Missing,
    /// The field has the wrong YAML type.
    #[error("expected {expected}")]
    WrongType {
        /// The expected type.
        expected: &'static str,
    },
    /// The field is not part of the schema (a typo would otherwise silently weaken a policy).
    #[error("unknown field")]
    UnknownField,
    /// `apiVersion`/`kind` is not one this crate understands.
    #[error("unsupported {what} `{value}`")]
    Unsupported {
        /// `apiVersion` or `kind`.
        what: &'static str,
        /// The value found.
        value: String,
    },
    /// An empty string where a value is required.
    #[error("empty string is not allowed")]
    EmptyString,
    /// A list or object that must not be empty is empty (`from: []`, `source: {}`, ...).
    #[error("must not be empty")]
    Empty,
    /// A `null` entry where an object is required.
    #[error("null entry is not allowed")]
    Null,
    /// Not an IP address or CIDR block.
    #[error("`{value}` is not an IP address or CIDR block")]
    BadCidr {
        /// The value found.
        value: String,
    },
    /// Not a port number in 0–65535 (or 1–65535 where stated).
    #[error("`{value}` is not a valid port")]
    BadPort {
        /// The value found.
        value: String,
    },
    /// An unknown action.
    #[error("unknown action `{value}`")]
    BadAction {
        /// The value found.
        value: String,
    },
    /// An unknown mTLS mode.
    #[error("unknown mTLS mode `{value}`")]
    BadMode {
        /// The value found.
        value: String,
    },
    /// A `when` key that does not exist.
    #[error("unknown condition key `{value}`")]
    UnknownKey {
        /// The key found.
        value: String,
    },
    /// A `when` key that Istio removed or does not support here.
    #[error("condition key `{value}` is not supported: {why}")]
    UnsupportedKey {
        /// The key found.
        value: String,
        /// Why it is rejected.
        why: &'static str,
    },
    /// A malformed value for its field (path template, trust domain, service account...).
    #[error("invalid value `{value}`: {why}")]
    BadValue {
        /// The value found.
        value: String,
        /// What rule it breaks.
        why: &'static str,
    },
    /// Two fields that must not be used together.
    #[error("cannot be combined with `{other}`")]
    Conflict {
        /// The other field.
        other: &'static str,
    },
    /// A structural rule of the policy was broken (e.g. DENY without rules).
    #[error("{0}")]
    Rule(&'static str),
    /// Too many entries.
    #[error("at most {max} entries are allowed")]
    TooMany {
        /// The limit.
        max: usize,
    },
}
