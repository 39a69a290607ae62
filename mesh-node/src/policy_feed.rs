//! The policy feed: the seam through which a sidecar receives the security
//! policies in force. The server publishes them, the agent relays them, and
//! anything that holds a [`PolicyFeed`] reads the newest set.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One policy file as distributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// The file's name in the policy directory.
    pub name: String,
    /// Its YAML.
    pub yaml: String,
}

/// A validated set of policy files and its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyBundle {
    /// Grows with every accepted change; 0 before the first.
    pub version: u64,
    /// The files, in name order.
    pub files: Vec<PolicyFile>,
}

impl PolicyBundle {
    /// Parses the files into an authz policy set.
    pub fn parse(&self) -> Result<authz::PolicySet, authz::LoadError> {
        let mut all = authz::PolicySet::default();
        for f in &self.files {
            let one = authz::PolicySet::from_yaml_str(&f.name, &f.yaml)?;
            all.authorization.extend(one.authorization);
            all.peer_authentication.extend(one.peer_authentication);
            all.request_authentication
                .extend(one.request_authentication);
            all.warnings.extend(one.warnings);
        }
        Ok(all)
    }
}

/// Something that holds the newest policy set and says when it changes.
pub trait PolicyFeed: Send + Sync + 'static {
    /// A receiver of the newest set.
    fn policies(&self) -> watch::Receiver<Arc<PolicyBundle>>;
}

impl PolicyFeed for watch::Receiver<Arc<PolicyBundle>> {
    fn policies(&self) -> watch::Receiver<Arc<PolicyBundle>> {
        self.clone()
    }
}
