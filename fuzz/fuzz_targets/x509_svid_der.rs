//! X509-SVIDs in the Workload API form (concatenated DER chain + PKCS#8
//! DER key), and the same bytes as a DER bundle.
//!
//! Input: u16 big-endian chain length, the chain, the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::{TrustDomain, X509Bundle, X509Svid};

fuzz_target!(|data: &[u8]| {
    let (chain, key) = spiffe_fuzz::two_parts(data);
    if let Ok(svid) = X509Svid::from_der(chain, key) {
        assert!(!svid.chain().is_empty());
    }
    let td: TrustDomain = spiffe_fuzz::TRUST_DOMAIN
        .parse()
        .expect("fixed trust domain");
    let _ = X509Bundle::from_der(td, chain);
});
