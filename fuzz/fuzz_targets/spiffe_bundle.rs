//! SPIFFE bundle documents: parse, and a parsed bundle serializes to a
//! document that parses to the same bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::{SpiffeBundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let td: TrustDomain = spiffe_fuzz::TRUST_DOMAIN
        .parse()
        .expect("fixed trust domain");
    if let Ok(bundle) = SpiffeBundle::parse(td.clone(), data) {
        let again = SpiffeBundle::parse(td, &bundle.to_json()).expect("a serialized bundle parses");
        assert_eq!(bundle.x509(), again.x509(), "X.509 authorities round trip");
        assert_eq!(bundle.jwt(), again.jwt(), "JWT authorities round trip");
        assert_eq!(bundle.sequence(), again.sequence(), "sequence round trip");
    }
});
