//! Conversion from parsed YAML/JSON documents into the validated model.
//!
//! Every check of §13 (V-1) happens here, so the engine only ever sees
//! valid policies; problems that Istio merely warns about (V-2) come back
//! as [`Warning`](crate::Warning)s.

mod authorization;
mod common;
mod peer;
mod request_auth;

use serde_json::Value;

use crate::error::{ValidationError, ValidationKind};
use crate::model::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use crate::node::{Node, VResult};

/// One successfully converted document.
#[derive(Debug)]
pub(crate) enum Document {
    Authorization(AuthorizationPolicy),
    Peer(PeerAuthentication),
    RequestAuth(RequestAuthentication),
}

/// Converts one document; warnings are pushed as (field, message).
pub(crate) fn convert(value: &Value, warnings: &mut Vec<(String, String)>) -> VResult<Document> {
    let root = Node::root(value);
    root.only_keys(&["apiVersion", "kind", "metadata", "spec", "status"])?;
    let api = root.require("apiVersion")?;
    let api_version = api.str()?;
    if api_version != "security.istio.io/v1" && api_version != "security.istio.io/v1beta1" {
        return Err(api.err(ValidationKind::Unsupported {
            what: "apiVersion",
            value: api_version.to_owned(),
        }));
    }
    let kind_node = root.require("kind")?;
    let meta = common::metadata(&root, warnings)?;
    let empty = Value::Object(serde_json::Map::new());
    let spec = match root.get("spec")? {
        Some(spec) => spec,
        None => Node {
            value: &empty,
            path: "spec".to_owned(),
        },
    };
    spec.object()?;
    match kind_node.str()? {
        "AuthorizationPolicy" => {
            authorization::convert(meta, &spec, warnings).map(Document::Authorization)
        }
        "PeerAuthentication" => peer::convert(meta, &spec).map(Document::Peer),
        "RequestAuthentication" => {
            request_auth::convert(meta, &spec, warnings).map(Document::RequestAuth)
        }
        other => Err(kind_node.err(ValidationKind::Unsupported {
            what: "kind",
            value: other.to_owned(),
        })),
    }
}

pub(crate) fn at(field: &str, kind: ValidationKind) -> ValidationError {
    ValidationError {
        field: field.to_owned(),
        kind,
    }
}
