//! X509-SVIDs from PEM (`CERTIFICATE` blocks + `PRIVATE KEY`), and the same
//! chain bytes as a PEM bundle.
//!
//! Input: u16 big-endian chain length, the chain PEM, the key PEM.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::{TrustDomain, X509Bundle, X509Svid};

fuzz_target!(|data: &[u8]| {
    let (chain, key) = spiffe_fuzz::two_parts(data);
    let _ = X509Svid::from_pem(chain, key);
    let td: TrustDomain = spiffe_fuzz::TRUST_DOMAIN
        .parse()
        .expect("fixed trust domain");
    let _ = X509Bundle::from_pem(td, chain);
});
