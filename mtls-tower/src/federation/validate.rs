//! The checks a fetched body passes before it replaces the stored bundle.

use std::collections::HashMap;

use serde_json::Value;
use spiffe_core::{SpiffeBundle, TrustDomain};

use super::error::{DuplicateKey, FetchError};

/// Parses `body` as the bundle of `td` and checks it against `stored`:
/// no duplicate key, no authority naming another trust domain, and a
/// `spiffe_sequence` that does not go back (FED-9). Without a sequence on
/// either side, the newest fetch wins.
pub(crate) fn check(
    td: &TrustDomain,
    body: &[u8],
    stored: Option<&SpiffeBundle>,
) -> Result<SpiffeBundle, FetchError> {
    if let Some(dup) = duplicate_key(body) {
        return Err(FetchError::DuplicateKey(dup));
    }
    let bundle = SpiffeBundle::parse(td.clone(), body)?;
    check_parsed(td, &bundle, stored)?;
    Ok(bundle)
}

/// The checks that do not need the document's text.
pub(crate) fn check_parsed(
    td: &TrustDomain,
    bundle: &SpiffeBundle,
    stored: Option<&SpiffeBundle>,
) -> Result<(), FetchError> {
    if let Some(named) = bundle
        .x509()
        .authority_ids()
        .into_iter()
        .find(|id| id.trust_domain() != td)
    {
        return Err(FetchError::ForeignTrustDomain {
            expected: td.clone(),
            named,
        });
    }
    let dup = bundle
        .x509()
        .authorities()
        .iter()
        .enumerate()
        .find_map(|(i, a)| {
            bundle.x509().authorities()[..i]
                .iter()
                .position(|b| b == a)
                .map(|j| (j, i))
        });
    if let Some((a, b)) = dup {
        return Err(FetchError::DuplicateKey(DuplicateKey::Certificate(a, b)));
    }
    if let (Some(old), Some(new)) = (stored.and_then(SpiffeBundle::sequence), bundle.sequence()) {
        if new < old {
            return Err(FetchError::SequenceRegressed {
                stored: old,
                fetched: new,
            });
        }
        let same_keys =
            stored.is_some_and(|s| s.x509() == bundle.x509() && s.jwt() == bundle.jwt());
        if new == old && !same_keys {
            return Err(FetchError::SequenceReused(new));
        }
    }
    Ok(())
}

/// A `kid` or an `x5c` certificate that appears twice in `keys`. The JWT
/// half of a parsed bundle is a map by `kid`, which would keep only the
/// last of two, so this looks at the document itself.
fn duplicate_key(body: &[u8]) -> Option<DuplicateKey> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let keys = doc.get("keys")?.as_array()?;
    let mut kids: HashMap<&str, usize> = HashMap::new();
    let mut certs: HashMap<&str, usize> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        if let Some(kid) = key.get("kid").and_then(Value::as_str)
            && kids.insert(kid, i).is_some()
        {
            return Some(DuplicateKey::Kid(kid.to_owned()));
        }
        if let Some(cert) = key
            .get("x5c")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .and_then(Value::as_str)
            && let Some(j) = certs.insert(cert, i)
        {
            return Some(DuplicateKey::Certificate(j, i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_kid_is_found_in_the_document() {
        let doc = br#"{"keys":[{"kty":"EC","kid":"a"},{"kty":"EC","kid":"a"}]}"#;
        assert_eq!(duplicate_key(doc), Some(DuplicateKey::Kid("a".into())));
        let doc =
            br#"{"keys":[{"kty":"EC","kid":"a","x5c":["QQ=="]},{"kty":"EC","x5c":["QQ=="]}]}"#;
        assert_eq!(duplicate_key(doc), Some(DuplicateKey::Certificate(0, 1)));
    }

    #[test]
    fn sequence_must_not_go_back() {
        let td: TrustDomain = "a.org".parse().unwrap();
        let stored = SpiffeBundle::empty(td.clone()).with_sequence(5);
        let older = br#"{"keys":[],"spiffe_sequence":4}"#;
        assert!(matches!(
            check(&td, older, Some(&stored)),
            Err(FetchError::SequenceRegressed {
                stored: 5,
                fetched: 4
            })
        ));
        let same = br#"{"keys":[],"spiffe_sequence":5}"#;
        assert!(check(&td, same, Some(&stored)).is_ok());
        let unsequenced = br#"{"keys":[]}"#;
        assert!(check(&td, unsequenced, Some(&stored)).is_ok());
    }
}
