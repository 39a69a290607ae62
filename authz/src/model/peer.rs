//! `PeerAuthentication` (§14).

use std::collections::BTreeMap;

use super::common::Selector;

/// An mTLS mode (PA-1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MtlsMode {
    /// Inherit from the parent level.
    #[default]
    Unset,
    /// The sidecar does not terminate mTLS; there is no peer identity.
    Disable,
    /// Accept Istio mTLS and plaintext.
    Permissive,
    /// Accept Istio mTLS only.
    Strict,
}

/// A validated `PeerAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerAuthentication {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.creationTimestamp` (RFC 3339), used to pick the oldest (PA-3).
    pub creation_timestamp: Option<String>,
    /// `spec.selector`, if any.
    pub selector: Option<Selector>,
    /// `spec.mtls.mode`.
    pub mode: MtlsMode,
    /// `spec.portLevelMtls`: workload port → mode (PA-5).
    pub port_level_mtls: BTreeMap<u16, MtlsMode>,
}
