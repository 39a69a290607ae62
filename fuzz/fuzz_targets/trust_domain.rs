//! Trust domain names: parse, round-trip, and the ID of a trust domain
//! is a member of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::TrustDomain;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(td) = text.parse::<TrustDomain>() {
        let again: TrustDomain = td
            .to_string()
            .parse()
            .expect("Display of a parsed trust domain parses");
        assert_eq!(td, again, "trust domain round trip");
        assert_eq!(
            td.as_str(),
            td.as_str().to_ascii_lowercase(),
            "canonical lowercase"
        );
    }
});
