//! The admin API's JSON documents: what the server's admin socket answers
//! and what the CLI sends. One definition serves both sides.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use svid_ca::{AttestedNode, AuthorityInfo, RegistrationEntry};

/// A registration entry as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    /// The entry's id.
    pub id: String,
    /// The identity granted.
    pub spiffe_id: String,
    /// The node (or node alias) the workload must run under.
    pub parent_id: String,
    /// `type:value` selectors, all required.
    pub selectors: Vec<String>,
    /// X509-SVID TTL in seconds; the authority's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_svid_ttl: Option<u64>,
    /// JWT-SVID TTL in seconds; the authority's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_svid_ttl: Option<u64>,
    /// DNS SANs.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Federated trust domains.
    #[serde(default)]
    pub federates_with: Vec<String>,
    /// Whether the workload may administer the server.
    #[serde(default)]
    pub admin: bool,
    /// The operator's hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<&RegistrationEntry> for EntryView {
    fn from(e: &RegistrationEntry) -> Self {
        EntryView {
            id: e.id.to_string(),
            spiffe_id: e.spiffe_id.to_string(),
            parent_id: e.parent_id.to_string(),
            selectors: e.selectors.iter().map(ToString::to_string).collect(),
            x509_svid_ttl: e.x509_svid_ttl.map(|d| d.as_secs()),
            jwt_svid_ttl: e.jwt_svid_ttl.map(|d| d.as_secs()),
            dns_names: e.dns_names.clone(),
            federates_with: e.federates_with.iter().map(ToString::to_string).collect(),
            admin: e.admin,
            hint: e.hint.clone(),
        }
    }
}

/// What `entry create` and `entry update` send. Absent fields keep their
/// value on update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    /// The identity granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// The parent; the server's own ID for a node alias (`--node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Whether this is a node alias entry (parented by the server).
    #[serde(default)]
    pub node: bool,
    /// `type:value` selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors: Option<Vec<String>>,
    /// X509-SVID TTL in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_svid_ttl: Option<u64>,
    /// JWT-SVID TTL in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_svid_ttl: Option<u64>,
    /// DNS SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    /// Federated trust domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federates_with: Option<Vec<String>>,
    /// Admin entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// Hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A new join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// The secret, shown once.
    pub token: String,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
}

/// `token generate`'s request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Validity in seconds.
    pub ttl: u64,
}

/// An attested node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// The node's SPIFFE ID.
    pub spiffe_id: String,
    /// The attestor that vouched for it.
    pub attestor: String,
    /// Its selectors.
    pub selectors: Vec<String>,
    /// Unix seconds of its attestation.
    pub attested_at: u64,
}

impl From<&AttestedNode> for AgentView {
    fn from(n: &AttestedNode) -> Self {
        AgentView {
            spiffe_id: n.spiffe_id.to_string(),
            attestor: n.attestor.clone(),
            selectors: n.selectors.iter().map(ToString::to_string).collect(),
            attested_at: unix(n.attested_at),
        }
    }
}

/// One CA key slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityView {
    /// The slot's key id.
    pub id: String,
    /// `x509` or `jwt`.
    pub kind: String,
    /// `prepared`, `active` or `old`.
    pub state: String,
    /// Whether it is tainted.
    pub tainted: bool,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
}

impl From<&AuthorityInfo> for AuthorityView {
    fn from(a: &AuthorityInfo) -> Self {
        AuthorityView {
            id: a.id.clone(),
            kind: format!("{:?}", a.kind).to_lowercase(),
            state: format!("{:?}", a.state).to_lowercase(),
            tainted: a.tainted,
            not_before: unix(a.not_before),
            not_after: unix(a.not_after),
        }
    }
}

/// An error document: the one line the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    /// What went wrong.
    pub error: String,
}

/// Seconds since the Unix epoch.
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Seconds as a duration, if non-zero.
pub(crate) fn secs(s: Option<u64>) -> Option<Duration> {
    s.filter(|s| *s > 0).map(Duration::from_secs)
}
