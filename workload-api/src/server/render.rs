//! Domain state to Workload API messages (server side).

use std::collections::{HashMap, HashSet};

use prost_types::value::Kind;
use serde_json::Value;
use spiffe_core::TrustDomain;

use crate::proto;
use crate::provider::{IssuedSvid, WorkloadIdentity};

/// Map keys are the trust domain's SPIFFE ID, `spiffe://td` (7.1).
pub(super) fn td_key(td: &TrustDomain) -> String {
    format!("spiffe://{td}")
}

/// The SVIDs to send: those whose trust domain has a bundle (a response
/// with an empty `bundle` breaks WL-8), with duplicate hints dropped,
/// keeping the first (WL-9).
pub(super) fn usable_svids(id: &WorkloadIdentity) -> Vec<&IssuedSvid> {
    let mut hints = HashSet::new();
    id.svids
        .iter()
        .filter(|s| {
            id.bundles
                .get(s.svid.spiffe_id().trust_domain())
                .is_some_and(|b| !b.x509().is_empty())
        })
        .filter(|s| match s.hint.as_deref() {
            None | Some("") => true,
            Some(h) => hints.insert(h),
        })
        .collect()
}

pub(super) fn x509_svid_response(id: &WorkloadIdentity) -> Option<proto::X509svidResponse> {
    let svids = usable_svids(id);
    if svids.is_empty() {
        return None;
    }
    let own: HashSet<&TrustDomain> = svids
        .iter()
        .map(|s| s.svid.spiffe_id().trust_domain())
        .collect();
    let federated_bundles = id
        .bundles
        .iter()
        .filter(|b| !own.contains(b.trust_domain()) && !b.x509().is_empty())
        .map(|b| (td_key(b.trust_domain()), b.x509().to_der()))
        .collect();
    let svids = svids
        .into_iter()
        .map(|s| proto::X509svid {
            spiffe_id: s.svid.spiffe_id().to_string(),
            x509_svid: s.svid.chain_der(),
            x509_svid_key: s.svid.private_key().pkcs8_der().to_vec(),
            bundle: id
                .bundles
                .get(s.svid.spiffe_id().trust_domain())
                .map(|b| b.x509().to_der())
                .unwrap_or_default(),
            hint: s.hint.clone().unwrap_or_default(),
        })
        .collect();
    Some(proto::X509svidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles,
    })
}

/// All X.509 bundles: own trust domains always, federated ones when they
/// hold authorities.
pub(super) fn x509_bundles_response(id: &WorkloadIdentity) -> proto::X509BundlesResponse {
    let own: HashSet<&TrustDomain> = id.own_trust_domains().collect();
    let bundles = id
        .bundles
        .iter()
        .filter(|b| own.contains(b.trust_domain()) || !b.x509().is_empty())
        .map(|b| (td_key(b.trust_domain()), b.x509().to_der()))
        .collect();
    proto::X509BundlesResponse {
        crl: Vec::new(),
        bundles,
    }
}

/// All JWT bundles as plain JWKS (no `use`, WL-15).
pub(super) fn jwt_bundles_response(id: &WorkloadIdentity) -> proto::JwtBundlesResponse {
    let own: HashSet<&TrustDomain> = id.own_trust_domains().collect();
    let bundles: HashMap<String, Vec<u8>> = id
        .bundles
        .iter()
        .filter(|b| own.contains(b.trust_domain()) || !b.jwt().is_empty())
        .map(|b| (td_key(b.trust_domain()), b.jwt().to_jwks()))
        .collect();
    proto::JwtBundlesResponse { bundles }
}

/// JSON claims as a `google.protobuf.Struct`; `aud` always as a list.
pub(super) fn claims_struct(claims: &serde_json::Map<String, Value>) -> prost_types::Struct {
    let fields = claims
        .iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("aud", Value::String(s)) => Value::Array(vec![Value::String(s.clone())]),
                _ => v.clone(),
            };
            (k.clone(), json_to_value(&v))
        })
        .collect();
    prost_types::Struct { fields }
}

fn json_to_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}
