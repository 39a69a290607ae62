//! `PeerAuthentication` documents → [`PeerAuthentication`].

use std::collections::BTreeMap;

use super::common::{self, Metadata};
use crate::error::ValidationKind;
use crate::model::{MtlsMode, PeerAuthentication};
use crate::node::{Node, VResult};

fn parse_mode(node: &Node<'_>) -> VResult<MtlsMode> {
    node.only_keys(&["mode"])?;
    let Some(m) = node.get("mode")? else {
        return Ok(MtlsMode::Unset);
    };
    Ok(match m.str()? {
        "UNSET" => MtlsMode::Unset,
        "DISABLE" => MtlsMode::Disable,
        "PERMISSIVE" => MtlsMode::Permissive,
        "STRICT" => MtlsMode::Strict,
        other => {
            return Err(m.err(ValidationKind::BadMode {
                value: other.to_owned(),
            }));
        }
    })
}

pub(crate) fn convert(meta: Metadata, spec: &Node<'_>) -> VResult<PeerAuthentication> {
    spec.only_keys(&["selector", "mtls", "portLevelMtls"])?;
    // Warnings about empty selectors are not useful here: PA-2 defines them.
    let selector = common::selector(spec, &mut Vec::new())?;
    let mode = match spec.get("mtls")? {
        Some(m) => parse_mode(&m)?,
        None => MtlsMode::Unset,
    };
    let mut port_level_mtls = BTreeMap::new();
    if let Some(ports) = spec.get("portLevelMtls")? {
        if selector.as_ref().is_none_or(|s| s.match_labels.is_empty()) {
            return Err(ports.err(ValidationKind::Rule(
                "portLevelMtls requires a selector with labels",
            )));
        }
        for (key, value) in ports.entries()? {
            let port = common::parse_port(key, 1).ok_or_else(|| {
                value.err(ValidationKind::BadPort {
                    value: key.to_owned(),
                })
            })?;
            port_level_mtls.insert(port, parse_mode(&value)?);
        }
    }
    Ok(PeerAuthentication {
        name: meta.name,
        namespace: meta.namespace,
        creation_timestamp: meta.creation_timestamp,
        selector,
        mode,
        port_level_mtls,
    })
}
