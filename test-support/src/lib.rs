//! Shared test fixtures for the workspace: certificate authorities, X509-SVID
//! chains (the odd ones included) and JWT signing keys, all generated at test
//! time so no key material is checked in.
//!
//! ```
//! use test_support::{LeafSpec, TestCa};
//! let ca = TestCa::new("example.org");
//! let leaf = ca.leaf("spiffe://example.org/workload");
//! assert_eq!(leaf.chain.len(), 1);
//! let odd = ca.leaf_with(LeafSpec::new("spiffe://example.org/w").ca(true));
//! assert_eq!(odd.chain.len(), 1);
//! ```

mod ca;
mod jwt;
mod limit;
pub mod netns;
mod peer;
mod python;

pub use ca::{CaSpec, KeyKind, Leaf, LeafSpec, TestCa};
pub use jwt::{TestJwtKey, sign_raw};
pub use limit::{TimeLimit, time_limit, within};
pub use peer::{find_binary, require_binary, skip};
pub use python::{PY_SPIFFE, py_spiffe_venv, run_bounded};
pub use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};

/// Encodes bytes as a PEM block of the given label.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
