//! X509-SVIDs and X.509 bundles (X509-SVID standard, rules X509-*).

mod bundle;
mod der;
mod error;
mod key;
mod rules;
mod svid;
mod verify;

pub use bundle::X509Bundle;
pub use error::{VerifyError, X509Error};
pub use key::{KeyAlgorithm, PrivateKey};
pub use svid::X509Svid;
pub use verify::{VerifiedX509Svid, X509BundleLookup, verify_x509_svid, verify_x509_svid_full};
