//! JWKS documents as `FetchJWTBundles` delivers them: parse, and a parsed
//! bundle serializes to a JWKS that parses to the same bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::{JwtBundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let td: TrustDomain = spiffe_fuzz::TRUST_DOMAIN
        .parse()
        .expect("fixed trust domain");
    if let Ok(bundle) = JwtBundle::from_jwks(td.clone(), data) {
        let again = JwtBundle::from_jwks(td, &bundle.to_jwks()).expect("a serialized JWKS parses");
        assert_eq!(bundle, again, "JWKS round trip");
    }
});
