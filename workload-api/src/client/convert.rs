//! Workload API messages to domain types (client side), enforcing WL-8.

use std::collections::HashSet;

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};
use spiffe_core::{BundleSet, JwtBundle, JwtSvid, SpiffeId, TrustDomain, X509Bundle, X509Svid};

use super::MalformedResponse as M;
use crate::proto;

/// An X509-SVID received from the Workload API, with its hint.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSvid {
    /// The SVID.
    pub svid: X509Svid,
    /// The operator's hint, if one was sent.
    pub hint: Option<String>,
}

/// The X.509 state of a workload: its SVIDs (first = default) and the
/// bundles to verify peers with (own trust domains and federated ones).
#[derive(Debug, Clone, PartialEq)]
pub struct X509Context {
    /// The SVIDs, in the server's order; duplicates of a hint dropped.
    pub svids: Vec<WorkloadSvid>,
    /// The X.509 bundles.
    pub bundles: BundleSet,
}

impl X509Context {
    /// The default SVID (the first one, WL-10).
    pub fn default_svid(&self) -> Option<&X509Svid> {
        self.svids.first().map(|s| &s.svid)
    }
}

/// A JWT-SVID received from the Workload API, with its hint.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedJwtSvid {
    /// The token, parsed (the server is trusted; signature not checked).
    pub svid: JwtSvid,
    /// The operator's hint, if one was sent.
    pub hint: Option<String>,
}

/// The answer of `ValidateJWTSVID`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedJwtSvid {
    /// The token's subject.
    pub spiffe_id: SpiffeId,
    /// The claims the server returned.
    pub claims: Map<String, Value>,
}

fn nonempty<T: AsRef<[u8]>>(v: T, field: &'static str) -> Result<T, M> {
    if v.as_ref().is_empty() {
        Err(M::EmptyField { field })
    } else {
        Ok(v)
    }
}

fn spiffe_id(value: &str) -> Result<SpiffeId, M> {
    value.parse().map_err(|source| M::SpiffeId {
        value: value.to_owned(),
        source,
    })
}

/// Keys are `spiffe://td`; bare `td` is accepted too (7.1).
fn td_key(key: &str) -> Result<TrustDomain, M> {
    key.strip_prefix("spiffe://")
        .unwrap_or(key)
        .parse()
        .map_err(|source| M::TrustDomainKey {
            key: key.to_owned(),
            source,
        })
}

fn hint(h: String) -> Option<String> {
    (!h.is_empty()).then_some(h)
}

pub(crate) fn x509_context(msg: proto::X509svidResponse) -> Result<X509Context, M> {
    if msg.svids.is_empty() {
        return Err(M::NoSvids);
    }
    let mut bundles = BundleSet::new();
    let mut hints = HashSet::new();
    let mut svids = Vec::with_capacity(msg.svids.len());
    for s in msg.svids {
        let declared = spiffe_id(nonempty(&s.spiffe_id, "spiffe_id")?)?;
        let svid = X509Svid::from_der(
            nonempty(&s.x509_svid, "x509_svid")?,
            nonempty(&s.x509_svid_key, "x509_svid_key")?,
        )?;
        if *svid.spiffe_id() != declared {
            return Err(M::IdMismatch {
                declared: s.spiffe_id,
                found: svid.spiffe_id().to_string(),
            });
        }
        let td = declared.trust_domain().clone();
        bundles.insert_x509(X509Bundle::from_der(td, nonempty(&s.bundle, "bundle")?)?);
        let hint = hint(s.hint);
        if hint.as_ref().is_some_and(|h| !hints.insert(h.clone())) {
            continue; // WL-9: take the first of duplicates.
        }
        svids.push(WorkloadSvid { svid, hint });
    }
    for (key, der) in msg.federated_bundles {
        let td = td_key(&key)?;
        if bundles.get(&td).is_none() {
            bundles.insert_x509(X509Bundle::from_der(td, &der)?);
        }
    }
    Ok(X509Context { svids, bundles })
}

pub(crate) fn x509_bundles(msg: proto::X509BundlesResponse) -> Result<BundleSet, M> {
    let mut set = BundleSet::new();
    for (key, der) in msg.bundles {
        set.insert_x509(X509Bundle::from_der(td_key(&key)?, &der)?);
    }
    Ok(set)
}

pub(crate) fn jwt_bundles(msg: proto::JwtBundlesResponse) -> Result<BundleSet, M> {
    let mut set = BundleSet::new();
    for (key, jwks) in msg.bundles {
        set.insert_jwt(JwtBundle::from_jwks(td_key(&key)?, &jwks)?);
    }
    Ok(set)
}

pub(crate) fn jwt_svids(msg: proto::JwtsvidResponse) -> Result<Vec<FetchedJwtSvid>, M> {
    if msg.svids.is_empty() {
        return Err(M::NoSvids);
    }
    let mut hints = HashSet::new();
    let mut out = Vec::new();
    for s in msg.svids {
        let declared = spiffe_id(nonempty(&s.spiffe_id, "spiffe_id")?)?;
        let svid = JwtSvid::parse_insecure(nonempty(&s.svid, "svid")?)?;
        if *svid.spiffe_id() != declared {
            return Err(M::IdMismatch {
                declared: s.spiffe_id,
                found: svid.spiffe_id().to_string(),
            });
        }
        let hint = hint(s.hint);
        if hint.as_ref().is_some_and(|h| !hints.insert(h.clone())) {
            continue;
        }
        out.push(FetchedJwtSvid { svid, hint });
    }
    Ok(out)
}

pub(crate) fn validated(msg: proto::ValidateJwtsvidResponse) -> Result<ValidatedJwtSvid, M> {
    let spiffe_id = spiffe_id(nonempty(&msg.spiffe_id, "spiffe_id")?)?;
    let claims = msg.claims.ok_or(M::EmptyField { field: "claims" })?;
    Ok(ValidatedJwtSvid {
        spiffe_id,
        claims: struct_to_json(claims.fields),
    })
}

fn struct_to_json(
    fields: impl IntoIterator<Item = (String, prost_types::Value)>,
) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| (k, value_to_json(v)))
        .collect()
}

fn value_to_json(v: prost_types::Value) -> Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            // Integral values (exp, iat, nbf) come back as integers.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::Number(Number::from(n as i64))
            } else {
                Number::from_f64(n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s.fields)),
    }
}

#[cfg(test)]
mod tests {
    use test_support::TestCa;

    use super::*;

    struct Material {
        ca: TestCa,
        chain: Vec<u8>,
        key: Vec<u8>,
    }

    fn material(id: &str) -> Material {
        let ca = TestCa::new("example.org");
        let leaf = ca.leaf(id);
        Material {
            chain: leaf.chain_der(),
            key: leaf.key_der.clone(),
            ca,
        }
    }

    fn svid_msg(m: &Material, id: &str, hint: &str) -> proto::X509svid {
        proto::X509svid {
            spiffe_id: id.into(),
            x509_svid: m.chain.clone(),
            x509_svid_key: m.key.clone(),
            bundle: m.ca.root_cert().to_vec(),
            hint: hint.into(),
        }
    }

    #[test]
    fn well_formed_x509_response_converts() {
        let m = material("spiffe://example.org/a");
        let other = TestCa::new("partner.test");
        let msg = proto::X509svidResponse {
            svids: vec![svid_msg(&m, "spiffe://example.org/a", "h")],
            crl: vec![],
            federated_bundles: [(
                "spiffe://partner.test".to_owned(),
                other.root_cert().to_vec(),
            )]
            .into(),
        };
        let ctx = x509_context(msg).unwrap();
        assert_eq!(ctx.svids[0].hint.as_deref(), Some("h"));
        assert_eq!(ctx.bundles.len(), 2);
    }

    #[test]
    fn wl_8_empty_svid_list_is_malformed() {
        let msg = proto::X509svidResponse::default();
        assert!(matches!(x509_context(msg), Err(M::NoSvids)));
        assert!(matches!(
            jwt_svids(proto::JwtsvidResponse::default()),
            Err(M::NoSvids)
        ));
    }

    #[test]
    fn wl_8_empty_mandatory_fields_are_malformed() {
        let m = material("spiffe://example.org/a");
        for (field, clear) in [
            (
                "spiffe_id",
                (|s: &mut proto::X509svid| s.spiffe_id.clear()) as fn(&mut _),
            ),
            ("x509_svid", |s| s.x509_svid.clear()),
            ("x509_svid_key", |s| s.x509_svid_key.clear()),
            ("bundle", |s| s.bundle.clear()),
        ] {
            let mut s = svid_msg(&m, "spiffe://example.org/a", "");
            clear(&mut s);
            let msg = proto::X509svidResponse {
                svids: vec![s],
                ..Default::default()
            };
            match x509_context(msg) {
                Err(M::EmptyField { field: f }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn svid_naming_another_id_than_its_field_is_malformed() {
        let m = material("spiffe://example.org/a");
        let msg = proto::X509svidResponse {
            svids: vec![svid_msg(&m, "spiffe://example.org/b", "")],
            ..Default::default()
        };
        assert!(matches!(x509_context(msg), Err(M::IdMismatch { .. })));
    }

    #[test]
    fn garbage_certificate_or_key_is_malformed() {
        let m = material("spiffe://example.org/a");
        let mut s = svid_msg(&m, "spiffe://example.org/a", "");
        s.x509_svid_key = vec![0x30, 0x03, 0x02, 0x01, 0x00];
        let msg = proto::X509svidResponse {
            svids: vec![s],
            ..Default::default()
        };
        assert!(matches!(x509_context(msg), Err(M::X509(_))));
        let mut s = svid_msg(&m, "spiffe://example.org/a", "");
        s.x509_svid = vec![1, 2, 3];
        let msg = proto::X509svidResponse {
            svids: vec![s],
            ..Default::default()
        };
        assert!(matches!(x509_context(msg), Err(M::X509(_))));
    }

    #[test]
    fn bundle_keys_accept_spiffe_ids_and_bare_names_and_reject_junk() {
        let ca = TestCa::new("example.org");
        let ok = proto::X509BundlesResponse {
            crl: vec![],
            bundles: [
                ("spiffe://example.org".to_owned(), ca.root_cert().to_vec()),
                ("partner.test".to_owned(), ca.root_cert().to_vec()),
            ]
            .into(),
        };
        assert_eq!(x509_bundles(ok).unwrap().len(), 2);
        let bad = proto::X509BundlesResponse {
            crl: vec![],
            bundles: [("Not A Domain!".to_owned(), ca.root_cert().to_vec())].into(),
        };
        assert!(matches!(x509_bundles(bad), Err(M::TrustDomainKey { .. })));
        let bad_jwks = proto::JwtBundlesResponse {
            bundles: [("spiffe://example.org".to_owned(), b"{not json".to_vec())].into(),
        };
        assert!(matches!(jwt_bundles(bad_jwks), Err(M::Jwt(_))));
    }

    #[test]
    fn validate_response_without_claims_is_malformed() {
        let msg = proto::ValidateJwtsvidResponse {
            spiffe_id: "spiffe://example.org/a".into(),
            claims: None,
        };
        assert!(matches!(
            validated(msg),
            Err(M::EmptyField { field: "claims" })
        ));
    }

    #[test]
    fn struct_numbers_come_back_as_integers() {
        let v = prost_types::Value {
            kind: Some(Kind::NumberValue(1_700_000_000.0)),
        };
        assert_eq!(value_to_json(v), serde_json::json!(1_700_000_000));
        let v = prost_types::Value {
            kind: Some(Kind::NumberValue(0.5)),
        };
        assert_eq!(value_to_json(v), serde_json::json!(0.5));
    }
}
