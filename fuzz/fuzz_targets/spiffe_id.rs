//! SPIFFE IDs: parse, and every ID that parses round-trips through Display.
//! Parsing accepts IDs longer than 2048 bytes (ID-6 requires support up to
//! 2048, not refusal beyond); building one from its parts refuses exactly
//! those.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<SpiffeId>() {
        let again: SpiffeId = id
            .to_string()
            .parse()
            .expect("Display of a parsed SPIFFE ID parses");
        assert_eq!(id, again, "SPIFFE ID round trip");
        let built = SpiffeId::from_path(id.trust_domain(), id.path());
        let fits = id.to_string().len() <= spiffe_core::MAX_SPIFFE_ID_LEN;
        assert_eq!(built.is_ok(), fits, "construction enforces ID-6's length");
        if let Ok(built) = built {
            assert_eq!(built, id, "construction from the parts of a parsed ID");
        }
    }
});
