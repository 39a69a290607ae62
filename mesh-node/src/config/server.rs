//! `mesh-node server`'s configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spiffe_core::TrustDomain;

use super::ConfigError;

/// The server's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The trust domain the server is the authority of.
    pub trust_domain: String,
    /// Where the CA journal, registry and node records live.
    pub data_dir: PathBuf,
    /// The node API's TCP address (gRPC over TLS).
    pub node_api_listen: SocketAddr,
    /// The admin API's Unix socket; `<data_dir>/admin.sock` when absent.
    pub admin_socket: Option<PathBuf>,
    /// `/healthz`, `/readyz` and `/metrics`; off when absent.
    pub health_listen: Option<SocketAddr>,
    /// The certificate authority.
    pub ca: CaSettings,
    /// x509pop node attestation: PEM CA certificates that node
    /// certificates must chain to; off when absent.
    pub x509pop_ca_bundle_path: Option<PathBuf>,
    /// Istio security policies (AuthorizationPolicy, PeerAuthentication,
    /// RequestAuthentication YAML) distributed to agents; reloaded when the
    /// directory changes. None: no policies.
    pub policy_dir: Option<PathBuf>,
}

/// The certificate authority's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CaSettings {
    /// Lifetime of each CA key.
    #[serde(with = "super::duration")]
    pub ca_ttl: Duration,
    /// Default X509-SVID lifetime.
    #[serde(with = "super::duration")]
    pub x509_svid_ttl: Duration,
    /// Default JWT-SVID lifetime.
    #[serde(with = "super::duration")]
    pub jwt_svid_ttl: Duration,
    /// How often the rotation schedule is checked.
    #[serde(with = "super::duration")]
    pub rotation_check: Duration,
}

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            ca_ttl: Duration::from_secs(24 * 3600),
            x509_svid_ttl: Duration::from_secs(3600),
            jwt_svid_ttl: Duration::from_secs(300),
            rotation_check: Duration::from_secs(10),
        }
    }
}

/// The data directory used when none is given.
pub const DEFAULT_SERVER_DATA_DIR: &str = ".mesh-node/server";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            trust_domain: "example.org".into(),
            data_dir: PathBuf::from(DEFAULT_SERVER_DATA_DIR),
            node_api_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_socket: None,
            health_listen: None,
            ca: CaSettings::default(),
            x509pop_ca_bundle_path: None,
            policy_dir: None,
        }
    }
}

impl ServerConfig {
    /// Reads `path` (or the defaults when `None`).
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        super::load(path)
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

    /// The admin socket's path.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }
}
