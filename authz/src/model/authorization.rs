//! `AuthorizationPolicy` and its rules.

use super::common::{Selector, TargetRef};
use crate::condition::ConditionKey;

/// What a matching policy does (E-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// Allow matching requests; the presence of one flips the workload to default-deny (E-5).
    Allow,
    /// Deny matching requests (E-3).
    Deny,
    /// Mark matching requests for auditing; never changes the decision (E-6).
    Audit,
    /// Ask an external authorizer about matching requests (E-2).
    Custom,
}

impl Action {
    /// The upper-case name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

/// A validated `security.istio.io` `AuthorizationPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `spec.selector`, if any.
    pub selector: Option<Selector>,
    /// `spec.targetRefs` (or `targetRef`); sidecars ignore policies that have any (S-4).
    pub target_refs: Vec<TargetRef>,
    /// `spec.action` (default `ALLOW`).
    pub action: Action,
    /// `spec.provider.name` for CUSTOM policies.
    pub provider: Option<String>,
    /// `spec.rules`; empty means the policy never matches (E-7).
    pub rules: Vec<Rule>,
    /// `istio.io/dry-run` annotation, parsed as in D-1.
    pub dry_run: bool,
}

/// One entry of `spec.rules` (B-2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rule {
    /// `from[].source`; `None` when `from` is absent.
    pub from: Option<Vec<Source>>,
    /// `to[].operation`; `None` when `to` is absent.
    pub to: Option<Vec<Operation>>,
    /// `when[]` conditions, all of which must hold.
    pub when: Vec<Condition>,
}

/// `rules[].from[].source` (§5). Every set field must hold (B-3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Source {
    /// `principals`: peer SPIFFE IDs without the scheme (I-1).
    pub principals: Vec<String>,
    /// `notPrincipals`.
    pub not_principals: Vec<String>,
    /// `requestPrincipals`: JWT `iss/sub` (RA-7).
    pub request_principals: Vec<String>,
    /// `notRequestPrincipals`.
    pub not_request_principals: Vec<String>,
    /// `namespaces` (I-2).
    pub namespaces: Vec<String>,
    /// `notNamespaces`.
    pub not_namespaces: Vec<String>,
    /// `serviceAccounts` (I-3).
    pub service_accounts: Vec<String>,
    /// `notServiceAccounts`.
    pub not_service_accounts: Vec<String>,
    /// `trustDomains` (I-4).
    pub trust_domains: Vec<String>,
    /// `notTrustDomains`.
    pub not_trust_domains: Vec<String>,
    /// `ipBlocks`: the direct peer address (F-2).
    pub ip_blocks: Vec<String>,
    /// `notIpBlocks`.
    pub not_ip_blocks: Vec<String>,
    /// `remoteIpBlocks`: the original client address.
    pub remote_ip_blocks: Vec<String>,
    /// `notRemoteIpBlocks`.
    pub not_remote_ip_blocks: Vec<String>,
}

/// `rules[].to[].operation` (§6). Every set field must hold (B-3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Operation {
    /// `hosts` (M-6).
    pub hosts: Vec<String>,
    /// `notHosts`.
    pub not_hosts: Vec<String>,
    /// `ports`: workload ports (M-4).
    pub ports: Vec<u16>,
    /// `notPorts`.
    pub not_ports: Vec<u16>,
    /// `methods`.
    pub methods: Vec<String>,
    /// `notMethods`.
    pub not_methods: Vec<String>,
    /// `paths` (M-7, M-8).
    pub paths: Vec<String>,
    /// `notPaths`.
    pub not_paths: Vec<String>,
}

/// One `rules[].when[]` condition (§7).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Condition {
    /// The key as written, e.g. `request.headers[x-token]`.
    pub key: String,
    /// `values`.
    pub values: Vec<String>,
    /// `notValues`.
    pub not_values: Vec<String>,
    pub(crate) parsed: ConditionKey,
}
