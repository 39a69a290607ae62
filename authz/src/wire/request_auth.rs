//! `RequestAuthentication` documents → [`RequestAuthentication`].

use super::common::{self, Metadata};
use crate::error::ValidationKind;
use crate::model::{JwtHeader, JwtRule, RequestAuthentication};
use crate::node::{Node, VResult};

pub(crate) fn convert(
    meta: Metadata,
    spec: &Node<'_>,
    warnings: &mut Vec<(String, String)>,
) -> VResult<RequestAuthentication> {
    spec.only_keys(&["selector", "targetRef", "targetRefs", "jwtRules"])?;
    let selector = common::selector(spec, &mut Vec::new())?;
    let target_refs = common::target_refs(spec)?;
    if selector.is_some() && !target_refs.is_empty() {
        return Err(super::at(
            "spec.selector",
            ValidationKind::Conflict {
                other: "targetRefs",
            },
        ));
    }
    let mut jwt_rules = Vec::new();
    if let Some(list) = spec.get("jwtRules")? {
        for item in list.items()? {
            if item.value.is_null() {
                return Err(item.err(ValidationKind::Null));
            }
            jwt_rules.push(jwt_rule(&item, warnings)?);
        }
    }
    Ok(RequestAuthentication {
        name: meta.name,
        namespace: meta.namespace,
        selector,
        target_refs,
        jwt_rules,
    })
}

fn jwt_rule(node: &Node<'_>, warnings: &mut Vec<(String, String)>) -> VResult<JwtRule> {
    node.only_keys(&[
        "issuer",
        "audiences",
        "jwksUri",
        "jwks",
        "fromHeaders",
        "fromParams",
        "fromCookies",
        "outputPayloadToHeader",
        "forwardOriginalToken",
        "outputClaimToHeaders",
        "spaceDelimitedClaims",
        "timeout",
    ])?;
    let issuer = node.opt_str("issuer")?.filter(|s| !s.is_empty());
    let jwks_uri = node.opt_str("jwksUri")?.filter(|s| !s.is_empty());
    let jwks = node.opt_str("jwks")?.filter(|s| !s.is_empty());
    if issuer.is_none() && jwks_uri.is_none() {
        return Err(super::at(
            &format!("{}.issuer", node.path),
            ValidationKind::Missing,
        ));
    }
    if jwks.is_some() && jwks_uri.is_some() {
        return Err(super::at(
            &format!("{}.jwks", node.path),
            ValidationKind::Conflict { other: "jwksUri" },
        ));
    }
    if let Some(doc) = &jwks
        && crate::jwks::parse_jwks(doc).is_none()
    {
        return Err(super::at(
            &format!("{}.jwks", node.path),
            ValidationKind::BadValue {
                value: doc.chars().take(40).collect(),
                why: "not a JWKS document",
            },
        ));
    }
    if let Some(doc) = &jwks
        && has_private_key_material(doc)
    {
        warnings.push((
            format!("{}.jwks", node.path),
            "contains private key material; publish public keys only".to_owned(),
        ));
    }
    if let Some(uri) = &jwks_uri
        && !(uri.starts_with("https://") || uri.starts_with("http://"))
    {
        return Err(super::at(
            &format!("{}.jwksUri", node.path),
            ValidationKind::BadValue {
                value: uri.clone(),
                why: "must be an http or https URL",
            },
        ));
    }
    let mut from_headers = Vec::new();
    if let Some(list) = node.get("fromHeaders")? {
        for item in list.items()? {
            item.only_keys(&["name", "prefix"])?;
            from_headers.push(JwtHeader {
                name: item.require("name")?.non_empty_str()?.to_owned(),
                prefix: item.opt_str("prefix")?.unwrap_or_default(),
            });
        }
    }
    let mut output_claim_to_headers = Vec::new();
    if let Some(list) = node.get("outputClaimToHeaders")? {
        for item in list.items()? {
            item.only_keys(&["header", "claim"])?;
            output_claim_to_headers.push((
                item.require("header")?.non_empty_str()?.to_owned(),
                item.require("claim")?.non_empty_str()?.to_owned(),
            ));
        }
    }
    Ok(JwtRule {
        issuer,
        audiences: node.opt_str_list("audiences")?,
        jwks_uri,
        jwks,
        from_headers,
        from_params: node.opt_str_list("fromParams")?,
        from_cookies: node.opt_str_list("fromCookies")?,
        output_payload_to_header: node.opt_str("outputPayloadToHeader")?,
        forward_original_token: match node.get("forwardOriginalToken")? {
            Some(b) => b.bool()?,
            None => false,
        },
        output_claim_to_headers,
        space_delimited_claims: node.opt_str_list("spaceDelimitedClaims")?,
    })
}

/// Whether any key of a JWKS document carries a private member (`d`, RSA
/// primes or CRT values, or a symmetric `k`).
fn has_private_key_material(doc: &str) -> bool {
    let Ok(serde_json::Value::Object(root)) = serde_json::from_str::<serde_json::Value>(doc) else {
        return false;
    };
    root.get("keys")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|keys| {
            keys.iter()
                .filter_map(serde_json::Value::as_object)
                .any(|k| {
                    ["d", "p", "q", "dp", "dq", "qi", "k"]
                        .iter()
                        .any(|m| k.contains_key(*m))
                })
        })
}
