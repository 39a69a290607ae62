//! Effective mTLS mode per port (§14, PA-2 … PA-5).

use std::collections::BTreeMap;

use crate::mesh::{MeshConfig, Workload};
use crate::model::{MtlsMode, PeerAuthentication};

/// The resolved mTLS modes of one workload; never `Unset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EffectiveMtls {
    default: MtlsMode,
    ports: BTreeMap<u16, MtlsMode>,
}

impl Default for EffectiveMtls {
    fn default() -> Self {
        EffectiveMtls {
            default: MtlsMode::Permissive,
            ports: BTreeMap::new(),
        }
    }
}

fn has_labels(p: &PeerAuthentication) -> bool {
    p.selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty())
}

/// PA-3: the oldest by `creationTimestamp` wins (name breaks ties).
fn oldest<'a>(
    candidates: impl Iterator<Item = &'a PeerAuthentication>,
) -> Option<&'a PeerAuthentication> {
    candidates.min_by(|a, b| {
        let key = |p: &'a PeerAuthentication| {
            (
                p.creation_timestamp.is_none(),
                p.creation_timestamp.as_deref(),
                p.name.as_str(),
            )
        };
        key(a).cmp(&key(b))
    })
}

impl EffectiveMtls {
    pub(crate) fn resolve(
        policies: &[PeerAuthentication],
        workload: &Workload,
        mesh: &MeshConfig,
    ) -> Self {
        let root = mesh.root_namespace.as_str();
        let mesh_level = oldest(
            policies
                .iter()
                .filter(|p| p.namespace == root && !has_labels(p)),
        );
        let ns_level = oldest(policies.iter().filter(|p| {
            p.namespace == workload.namespace && p.namespace != root && !has_labels(p)
        }));
        let workload_level = oldest(policies.iter().filter(|p| {
            p.namespace == workload.namespace
                && p.namespace != root
                && has_labels(p)
                && p.selector
                    .as_ref()
                    .is_some_and(|s| s.matches(&workload.labels))
        }));
        let mut mode = MtlsMode::Permissive;
        for level in [mesh_level, ns_level, workload_level].into_iter().flatten() {
            if level.mode != MtlsMode::Unset {
                mode = level.mode;
            }
        }
        let mut ports = BTreeMap::new();
        if let Some(w) = workload_level {
            for (port, m) in &w.port_level_mtls {
                ports.insert(*port, if *m == MtlsMode::Unset { mode } else { *m });
            }
        }
        EffectiveMtls {
            default: mode,
            ports,
        }
    }

    pub(crate) fn mode(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.default)
    }
}
