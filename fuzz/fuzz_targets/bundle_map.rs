//! SPIFFE bundle maps (`trust_domains`): parse, and a parsed map
//! serializes to one that parses to the same set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::BundleSet;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = BundleSet::from_bundle_map(data) {
        let again =
            BundleSet::from_bundle_map(&set.to_bundle_map()).expect("a serialized map parses");
        assert_eq!(set.len(), again.len(), "bundle map round trip");
        for bundle in set.iter() {
            let other = again
                .get(bundle.trust_domain())
                .expect("every trust domain survives the round trip");
            assert_eq!(bundle.x509(), other.x509());
            assert_eq!(bundle.jwt(), other.jwt());
        }
    }
});
