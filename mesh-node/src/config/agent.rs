//! `mesh-node agent`'s configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spiffe_core::TrustDomain;

use super::ConfigError;

/// The agent's configuration.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The trust domain of the server.
    pub trust_domain: String,
    /// The server's node API address, `host:port`.
    pub server_address: String,
    /// A file with the trust domain's bundle (PEM certificates or SPIFFE
    /// bundle JSON) that authenticates the server on first contact.
    pub trust_bundle_path: Option<PathBuf>,
    /// The join token to attest with when the agent has no node SVID yet.
    /// Never shown by `Debug`.
    pub join_token: Option<String>,
    /// x509pop attestation: the node's certificate chain (PEM, leaf
    /// first). With `x509pop_key_path`, preferred over a join token, and
    /// used again after an eviction.
    pub x509pop_cert_path: Option<PathBuf>,
    /// x509pop attestation: the certificate's P-256 key (PKCS#8 PEM).
    pub x509pop_key_path: Option<PathBuf>,
    /// Attest without authenticating the server when no trust bundle is
    /// configured, then trust the bundle the server returns. Logged loudly;
    /// use only where the network path to the server is trusted.
    pub insecure_bootstrap: bool,
    /// Where the node SVID, its key and the last bundle are kept.
    pub data_dir: PathBuf,
    /// The Workload API socket.
    pub workload_socket: PathBuf,
    /// The feed socket: the policy set and service discovery, relayed for
    /// the sidecars on this node; `<data_dir>/feed.sock` when absent.
    pub feed_socket: Option<PathBuf>,
    /// `/healthz`, `/readyz` and `/metrics`; off when absent.
    pub health_listen: Option<SocketAddr>,
    /// At most this many workload SVIDs are cached.
    pub max_cached_svids: usize,
    /// Whether the Unix attestor also reports `unix:path` and
    /// `unix:sha256` (reads and hashes the caller's binary).
    pub attest_binary: bool,
    /// Pause between reconnection attempts to the server, at first; it
    /// doubles up to 30 s.
    #[serde(with = "super::duration")]
    pub retry_initial: Duration,
    /// HTTP/2 PING interval on the connection to the server, also while
    /// the sync stream is idle: a silent partition (a cut link, a server
    /// that stopped answering) is noticed within this plus
    /// `sync_keepalive_timeout`, and the agent reconnects.
    #[serde(with = "super::duration")]
    pub sync_keepalive: Duration,
    /// How long a PING may go unanswered before the connection is dropped.
    #[serde(with = "super::duration")]
    pub sync_keepalive_timeout: Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("trust_domain", &self.trust_domain)
            .field("server_address", &self.server_address)
            .field("trust_bundle_path", &self.trust_bundle_path)
            .field(
                "join_token",
                &self.join_token.as_ref().map(|_| "<redacted>"),
            )
            .field("x509pop_cert_path", &self.x509pop_cert_path)
            .field("x509pop_key_path", &self.x509pop_key_path)
            .field("insecure_bootstrap", &self.insecure_bootstrap)
            .field("data_dir", &self.data_dir)
            .field("workload_socket", &self.workload_socket)
            .field("feed_socket", &self.feed_socket)
            .field("health_listen", &self.health_listen)
            .field("max_cached_svids", &self.max_cached_svids)
            .field("attest_binary", &self.attest_binary)
            .finish()
    }
}

/// The data directory used when none is given.
pub const DEFAULT_AGENT_DATA_DIR: &str = ".mesh-node/agent";

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            trust_domain: "example.org".into(),
            server_address: "127.0.0.1:8081".into(),
            trust_bundle_path: None,
            join_token: None,
            x509pop_cert_path: None,
            x509pop_key_path: None,
            insecure_bootstrap: false,
            data_dir: PathBuf::from(DEFAULT_AGENT_DATA_DIR),
            workload_socket: PathBuf::from(DEFAULT_AGENT_DATA_DIR).join("workload.sock"),
            feed_socket: None,
            health_listen: None,
            max_cached_svids: 10_000,
            attest_binary: false,
            retry_initial: Duration::from_millis(500),
            sync_keepalive: Duration::from_secs(15),
            sync_keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl AgentConfig {
    /// Reads `path` (or the defaults when `None`).
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        super::load(path)
    }

    /// The feed socket's path.
    pub fn feed_socket(&self) -> PathBuf {
        self.feed_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("feed.sock"))
    }

    /// The trust domain, parsed.
    pub fn trust_domain(&self) -> Result<TrustDomain, ConfigError> {
        self.trust_domain
            .parse()
            .map_err(|e: spiffe_core::IdError| ConfigError::Invalid {
                field: "trust_domain",
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_corrupt_config_names_the_file_the_line_and_the_field() {
        let text = "trust_domain = \"example.org\"\n\nmax_cached_svids = \"many\"\n";
        let err = super::super::parse::<AgentConfig>(Path::new("agent.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("agent.toml: line 3"), "{msg}");
        assert!(
            msg.contains("max_cached_svids") || msg.contains("invalid type"),
            "{msg}"
        );
        let err =
            super::super::parse::<AgentConfig>(Path::new("a.toml"), "colour = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 1") && msg.contains("colour"), "{msg}");
    }

    #[test]
    fn the_join_token_is_never_in_debug_output() {
        let c = AgentConfig {
            join_token: Some("s3cret-token".into()),
            ..AgentConfig::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
