//! SPIFFE bundles (BUN-*), bundle maps (MAP-*) and the set a workload trusts.

mod document;
mod error;
mod map;
mod set;

pub use document::SpiffeBundle;
pub use error::BundleError;
pub use set::BundleSet;
