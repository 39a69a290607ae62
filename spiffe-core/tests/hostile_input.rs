//! Arbitrary input to every parser: each one answers with a value or an
//! error, never a panic, and what it accepts is consistent.

use std::time::SystemTime;

use proptest::prelude::*;
use spiffe_core::{BundleSet, JwtBundle, JwtSvid, SpiffeBundle, TrustDomain, X509Bundle, X509Svid};

fn td() -> TrustDomain {
    "example.org".parse().unwrap()
}

/// Strings made of the pieces tokens and JSON documents are built from, so
/// the parsers get past their first check often.
fn tokenish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(".".to_owned()),
            Just("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ".to_owned()),
            Just("eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy93In0".to_owned()),
            "[A-Za-z0-9_-]{0,12}",
        ],
        0..8,
    )
    .prop_map(|v| v.concat())
}

fn jsonish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just("\"keys\"".to_owned()),
            Just("\"trust_domains\"".to_owned()),
            Just("\"kty\":\"EC\"".to_owned()),
            Just("\"use\":\"x509-svid\"".to_owned()),
            Just("\"use\":\"jwt-svid\"".to_owned()),
            Just("\"x5c\":[\"MAA=\"]".to_owned()),
            Just("\"kid\":\"k\"".to_owned()),
            Just("\"crv\":\"P-256\"".to_owned()),
            Just("\"example.org\"".to_owned()),
            "[ -~]{0,6}",
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn jwt_validation_never_panics(token in tokenish()) {
        let bundle = JwtBundle::new(td());
        let _ = JwtSvid::validate(&token, &bundle, "aud", SystemTime::now());
        let _ = JwtSvid::parse_insecure(&token);
    }

    #[test]
    fn jwt_bytes_never_panic(token in "\\PC{0,200}") {
        let bundle = JwtBundle::new(td());
        prop_assert!(JwtSvid::validate(&token, &bundle, "aud", SystemTime::now()).is_err());
    }

    #[test]
    fn bundle_documents_never_panic(doc in jsonish()) {
        if let Ok(b) = SpiffeBundle::parse(td(), doc.as_bytes()) {
            // Whatever is accepted serializes and reads back the same.
            prop_assert_eq!(SpiffeBundle::parse(td(), &b.to_json()).unwrap(), b);
        }
        let _ = JwtBundle::from_jwks(td(), doc.as_bytes());
        let _ = BundleSet::from_bundle_map(doc.as_bytes());
    }

    #[test]
    fn der_inputs_never_panic(chain in prop::collection::vec(any::<u8>(), 0..300),
                              key in prop::collection::vec(any::<u8>(), 0..100)) {
        prop_assert!(X509Svid::from_der(&chain, &key).is_err());
        let _ = X509Bundle::from_der(td(), &chain);
        let _ = X509Bundle::from_pem(td(), &chain);
        let _ = X509Svid::from_pem(&chain, &key);
    }
}
