//! SPIFFE IDs: parse, and every ID that parses round-trips through Display.
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
        assert!(id.to_string().len() <= spiffe_core::MAX_SPIFFE_ID_LEN);
    }
});
