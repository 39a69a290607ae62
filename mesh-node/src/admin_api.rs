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

/// A new join token. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// The secret, shown once.
    pub token: String,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
    /// The node alias entry that gives the node attesting with this token
    /// the requested SPIFFE ID (`token generate --spiffe-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<EntryView>,
}

impl std::fmt::Debug for TokenView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenView")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("alias", &self.alias)
            .finish()
    }
}

/// `token generate`'s request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Validity in seconds.
    pub ttl: u64,
    /// Also register this SPIFFE ID for the node that attests with the
    /// token: a node alias entry whose selector is the token's
    /// `join_token:<hash>`, so entries may name it as their parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
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

/// A federation relationship as `federation create` and `federation
/// update` send it, and as the server keeps it in its data directory.
/// Files are read by the CLI: the server receives their contents. On
/// update, absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationshipSpec {
    /// The federated trust domain (explicit, never taken from the URL: FED-4).
    pub trust_domain: String,
    /// The bundle endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `https_spiffe` or `https_web`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `https_spiffe`: the SPIFFE ID the endpoint must present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_spiffe_id: Option<String>,
    /// `https_spiffe`: the initial bundle, a SPIFFE bundle document or PEM
    /// certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// `https_web`: the PEM roots the endpoint's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_roots: Option<String>,
    /// The shortest poll interval in seconds; 60 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_floor: Option<u64>,
}

/// A federation relationship and what its fetcher has done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipView {
    /// The federated trust domain.
    pub trust_domain: String,
    /// The bundle endpoint URL.
    pub url: String,
    /// `https_spiffe` or `https_web`.
    pub profile: String,
    /// `https_spiffe`: the endpoint's SPIFFE ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_spiffe_id: Option<String>,
    /// Fetches accepted since the server started.
    pub accepted: u64,
    /// Unix seconds of the last accepted fetch since the server started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch: Option<u64>,
    /// The held bundle's `spiffe_sequence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// X.509 authorities in the held bundle.
    pub x509_authorities: usize,
    /// JWT keys in the held bundle.
    pub jwt_keys: usize,
    /// Seconds until the next poll.
    pub poll_interval: u64,
    /// Failed or refused fetches by reason, since the server started.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Why the last fetch failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_view_debug_leaves_the_secret_out() {
        let view = super::TokenView {
            token: "s3cr3t-join-token".into(),
            expires_at: 1,
            alias: None,
        };
        assert!(!format!("{view:?}").contains("s3cr3t"));
    }
}
