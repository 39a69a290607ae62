//! SPIFFE IDs and trust-domain names (SPIFFE-ID standard, rules ID-*, TD-*, PATH-*).

mod error;
mod parse;
mod serde_impl;
mod spiffe_id;
mod trust_domain;

pub use error::IdError;
pub use spiffe_id::SpiffeId;
pub use trust_domain::TrustDomain;

/// The URI scheme of every SPIFFE ID.
pub const SPIFFE_SCHEME: &str = "spiffe";

/// The longest trust-domain name, in bytes (ID-7).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// The longest SPIFFE ID this library constructs, in bytes (ID-6).
///
/// Parsing accepts longer IDs, as the standard requires support for at least
/// this length but does not require rejecting longer input.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
