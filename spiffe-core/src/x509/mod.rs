//! X509-SVIDs and X.509 bundles (X509-SVID standard, rules X509-*).

mod bundle;
mod cert;
mod der;
mod error;
mod key;
mod peer;
mod rules;
mod svid;
mod verify;

pub use bundle::X509Bundle;
pub(crate) use cert::{
    OID_EC_PUBLIC_KEY, OID_P256, OID_P384, OID_P521, OID_RSA, parse as parse_cert,
};
pub(crate) use der::{Reader, tag, valid_oid};
pub use error::{VerifyError, X509Error};
pub use key::{KeyAlgorithm, PrivateKey};
pub use peer::PeerIdentity;
pub use svid::X509Svid;
pub use verify::{X509BundleLookup, verify_x509_svid, verify_x509_svid_full};
