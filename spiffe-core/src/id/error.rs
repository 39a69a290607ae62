//! Why a SPIFFE ID or trust domain was refused.

/// Why a SPIFFE ID or trust-domain name was refused.
///
/// Each variant names the rule of the SPIFFE ID standard it enforces
/// (`ID-*`, `TD-*`, `PATH-*`), so a log line points straight at the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input was empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The input has no `scheme://` prefix at all (ID-1).
    #[error("SPIFFE ID has no scheme; expected `spiffe://` (ID-1)")]
    MissingScheme,
    /// The scheme is not `spiffe` (ID-1).
    #[error("SPIFFE ID scheme must be `spiffe` (ID-1)")]
    WrongScheme,
    /// The trust-domain part is empty (ID-2, TD-1).
    #[error("trust domain is empty (ID-2, TD-1)")]
    EmptyTrustDomain,
    /// The trust-domain name is longer than 255 bytes (ID-7).
    #[error("trust domain is {len} bytes long; the maximum is 255 (ID-7)")]
    TrustDomainTooLong {
        /// The length of the refused trust-domain name, in bytes.
        len: usize,
    },
    /// The authority carries userinfo (`user@host`) (TD-2).
    #[error("trust domain must not contain userinfo (`@`) (TD-2)")]
    Userinfo,
    /// The authority carries a port (`host:port`) (TD-2).
    #[error("trust domain must not contain a port (`:`) (TD-2)")]
    Port,
    /// A `%` appeared: percent-encoding is never allowed (TD-5, PATH-1).
    #[error("SPIFFE ID must not be percent-encoded (TD-5, PATH-1); `%` at byte {position}")]
    PercentEncoded {
        /// Byte offset of the `%` in the input.
        position: usize,
    },
    /// A `?` appeared: SPIFFE IDs have no query (ID-3).
    #[error("SPIFFE ID must not have a query (ID-3); `?` at byte {position}")]
    Query {
        /// Byte offset of the `?` in the input.
        position: usize,
    },
    /// A `#` appeared: SPIFFE IDs have no fragment (ID-3).
    #[error("SPIFFE ID must not have a fragment (ID-3); `#` at byte {position}")]
    Fragment {
        /// Byte offset of the `#` in the input.
        position: usize,
    },
    /// A byte outside `a-z 0-9 . - _` in the trust domain (TD-4, ID-8).
    #[error(
        "trust domain may only contain a-z, 0-9, '.', '-' and '_' (TD-4); byte 0x{byte:02x} at {position}"
    )]
    TrustDomainChar {
        /// The offending byte.
        byte: u8,
        /// Its byte offset in the input.
        position: usize,
    },
    /// A byte outside `a-z A-Z 0-9 . - _` in a path segment (PATH-4, ID-8).
    #[error(
        "path segments may only contain a-z, A-Z, 0-9, '.', '-' and '_' (PATH-4); byte 0x{byte:02x} at {position}"
    )]
    PathChar {
        /// The offending byte.
        byte: u8,
        /// Its byte offset in the input.
        position: usize,
    },
    /// Two slashes in a row: an empty path segment (PATH-2).
    #[error("path has an empty segment (PATH-2)")]
    EmptySegment,
    /// A `.` or `..` path segment (PATH-2).
    #[error("path has a `.` or `..` segment (PATH-2)")]
    DotSegment,
    /// The path ends with `/` (PATH-3).
    #[error("path must not end with `/` (PATH-3)")]
    TrailingSlash,
    /// A path given to a constructor does not start with `/`.
    #[error("path must be empty or start with `/`")]
    RelativePath,
    /// A constructor would build an ID longer than 2048 bytes (ID-6).
    #[error("SPIFFE ID would be {len} bytes long; the maximum this library builds is 2048 (ID-6)")]
    TooLong {
        /// The length the ID would have had, in bytes.
        len: usize,
    },
}
