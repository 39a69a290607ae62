//! Pieces shared by every policy kind.

use std::collections::BTreeMap;

/// `selector.matchLabels`: a policy applies to workloads carrying all of these labels (S-2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Selector {
    /// Required label key/value pairs.
    pub match_labels: BTreeMap<String, String>,
}

impl Selector {
    /// Subset test: every pair is present on the workload with the same value.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}

/// One entry of `targetRefs` (or the legacy `targetRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetRef {
    /// API group of the target, e.g. `gateway.networking.k8s.io`.
    pub group: String,
    /// Kind of the target, e.g. `Gateway`.
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Namespace of the target, when given.
    pub namespace: Option<String>,
}
