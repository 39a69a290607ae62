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
    /// The admin API also over mTLS on this TCP address, for workloads
    /// whose registration entry is marked `admin` (their X509-SVID is the
    /// credential, checked at the handshake); off when absent.
    pub admin_listen: Option<SocketAddr>,
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
    /// SPIFFE federation: this trust domain's bundle endpoint and the
    /// relationships configured at start.
    pub federation: FederationSettings,
}

/// `[federation]`: the bundle endpoint this server publishes and the
/// static relationships with other trust domains.
///
/// Static relationships are created at start when the data directory has
/// no relationship for their trust domain; one created, updated or
/// deleted at run time (admin API, `mesh-node federation ...`) is kept in
/// the data directory and wins over the file on later starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FederationSettings {
    /// This trust domain's bundle endpoint; not served when absent.
    pub bundle_endpoint: Option<BundleEndpointSettings>,
    /// Relationships created at start when absent from the data directory.
    pub relationships: Vec<RelationshipSettings>,
}

/// `[federation.bundle_endpoint]`: where and how the server publishes its
/// trust bundle (the CA's current X.509 and JWT authorities).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BundleEndpointSettings {
    /// The TCP address to listen on.
    pub listen: SocketAddr,
    /// `https_spiffe` (the server's own SVID, rotated with the CA) or
    /// `https_web` (`cert_file` and `key_file`, reloaded on change).
    pub profile: String,
    /// `https_web`: the PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// `https_web`: the PEM private key.
    pub key_file: Option<PathBuf>,
    /// The published `spiffe_refresh_hint`.
    #[serde(with = "super::duration")]
    pub refresh_hint: Duration,
}

impl Default for BundleEndpointSettings {
    fn default() -> Self {
        BundleEndpointSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            profile: "https_spiffe".into(),
            cert_file: None,
            key_file: None,
            refresh_hint: Duration::from_secs(300),
        }
    }
}

/// `[[federation.relationships]]`: one trust domain trusted through its
/// bundle endpoint, everything explicit (FED-4: the trust domain is never
/// inferred from the URL).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RelationshipSettings {
    /// The federated trust domain.
    pub trust_domain: String,
    /// The bundle endpoint URL (`https`, no userinfo).
    pub url: String,
    /// `https_spiffe` or `https_web`.
    pub profile: String,
    /// `https_spiffe`: the SPIFFE ID the endpoint must present.
    pub endpoint_spiffe_id: Option<String>,
    /// `https_spiffe`: the trust domain's initial bundle, a SPIFFE bundle
    /// document or PEM certificates.
    pub initial_bundle: Option<PathBuf>,
    /// `https_web`: PEM roots the endpoint's certificate must chain to.
    pub web_roots: Option<PathBuf>,
    /// The shortest poll interval; 1 minute when absent.
    #[serde(
        default,
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub poll_floor: Option<Duration>,
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
            admin_listen: None,
            health_listen: None,
            ca: CaSettings::default(),
            x509pop_ca_bundle_path: None,
            policy_dir: None,
            federation: FederationSettings::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federation_section_parses_with_defaults() {
        let c: ServerConfig = toml::from_str(
            r#"
[federation.bundle_endpoint]
listen = "127.0.0.1:9443"

[[federation.relationships]]
trust_domain = "partner.org"
url = "https://bundles.partner.org/"
profile = "https_spiffe"
endpoint_spiffe_id = "spiffe://partner.org/server"
initial_bundle = "partner.json"
poll_floor = "5s"
"#,
        )
        .unwrap();
        let ep = c.federation.bundle_endpoint.unwrap();
        assert_eq!(ep.profile, "https_spiffe");
        assert_eq!(ep.refresh_hint, Duration::from_secs(300));
        let r = &c.federation.relationships[0];
        assert_eq!(r.poll_floor, Some(Duration::from_secs(5)));
        assert!(r.web_roots.is_none());
        let none: ServerConfig = toml::from_str("").unwrap();
        assert!(none.federation.bundle_endpoint.is_none());
        assert!(none.federation.relationships.is_empty());
        let typo = toml::from_str::<ServerConfig>("[federation]\nbundle_endpoints = {}\n");
        assert!(typo.is_err());
    }
}
