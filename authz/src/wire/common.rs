//! Metadata, selectors and target references.

use std::collections::BTreeMap;

use crate::error::ValidationKind;
use crate::model::{Selector, TargetRef};
use crate::node::{Node, VResult};

/// The parts of `metadata` this crate uses.
#[derive(Debug)]
pub(crate) struct Metadata {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) creation_timestamp: Option<String>,
    /// The raw `istio.io/dry-run` annotation.
    pub(crate) dry_run: Option<String>,
    pub(crate) dry_run_path: String,
}

pub(crate) fn metadata(root: &Node<'_>, warnings: &mut Vec<(String, String)>) -> VResult<Metadata> {
    let meta = root.require("metadata")?;
    let name = meta.require("name")?.non_empty_str()?.to_owned();
    let namespace = match meta.get("namespace")? {
        Some(ns) => ns.non_empty_str()?.to_owned(),
        None => {
            warnings.push((
                "metadata.namespace".to_owned(),
                "missing; assuming namespace `default`".to_owned(),
            ));
            "default".to_owned()
        }
    };
    let creation_timestamp = meta.opt_str("creationTimestamp")?;
    let mut dry_run = None;
    let mut dry_run_path = String::new();
    if let Some(annotations) = meta.get("annotations")?
        && let Some(v) = annotations.get("istio.io/dry-run")?
    {
        dry_run_path = v.path.clone();
        dry_run = Some(match v.value {
            serde_json::Value::Bool(b) => b.to_string(),
            _ => v.str()?.to_owned(),
        });
    }
    Ok(Metadata {
        name,
        namespace,
        creation_timestamp,
        dry_run,
        dry_run_path,
    })
}

/// `spec.selector`; warns when it has no labels (V-2).
pub(crate) fn selector(
    spec: &Node<'_>,
    warnings: &mut Vec<(String, String)>,
) -> VResult<Option<Selector>> {
    let Some(sel) = spec.get("selector")? else {
        return Ok(None);
    };
    sel.only_keys(&["matchLabels"])?;
    let mut match_labels = BTreeMap::new();
    if let Some(labels) = sel.get("matchLabels")? {
        for (key, value) in labels.entries()? {
            if key.is_empty() {
                return Err(value.err(ValidationKind::EmptyString));
            }
            if key.contains('*') || value.str()?.contains('*') {
                return Err(value.err(ValidationKind::BadValue {
                    value: format!("{key}: {}", value.str()?),
                    why: "label wildcards are not supported",
                }));
            }
            match_labels.insert(key.to_owned(), value.str()?.to_owned());
        }
    }
    if match_labels.is_empty() {
        warnings.push((
            sel.path.clone(),
            "selector has no labels and applies to every workload".to_owned(),
        ));
    }
    Ok(Some(Selector { match_labels }))
}

/// `spec.targetRefs` and the legacy `spec.targetRef` (S-4).
pub(crate) fn target_refs(spec: &Node<'_>) -> VResult<Vec<TargetRef>> {
    let mut nodes = Vec::new();
    if let Some(one) = spec.get("targetRef")? {
        nodes.push(one);
    }
    if let Some(list) = spec.get("targetRefs")? {
        let items = list.items()?;
        if items.len() > 16 {
            return Err(list.err(ValidationKind::TooMany { max: 16 }));
        }
        nodes.extend(items);
    }
    nodes
        .iter()
        .map(|n| {
            n.only_keys(&["group", "kind", "name", "namespace"])?;
            Ok(TargetRef {
                group: n.opt_str("group")?.unwrap_or_default(),
                kind: n.require("kind")?.non_empty_str()?.to_owned(),
                name: n.require("name")?.non_empty_str()?.to_owned(),
                namespace: n.opt_str("namespace")?,
            })
        })
        .collect()
}

/// Go `strconv.ParseBool` (D-1).
pub(crate) fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A port given as a decimal string or an integer, in `min..=65535`.
pub(crate) fn port(node: &Node<'_>, min: u16) -> VResult<u16> {
    let text = match node.value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => {
            return Err(node.err(ValidationKind::WrongType {
                expected: "a port number",
            }));
        }
    };
    parse_port(&text, min).ok_or_else(|| node.err(ValidationKind::BadPort { value: text }))
}

pub(crate) fn parse_port(text: &str, min: u16) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p >= min)
}
