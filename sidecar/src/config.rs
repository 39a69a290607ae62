//! The sidecar's typed configuration.
//!
//! Every field has a default, so an empty document is a valid config that
//! listens on Istio's ports and forwards inbound traffic to
//! `127.0.0.1:8080`. The binary reads it from TOML; an embedding service
//! can build it in code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Millisecond durations in config files (`request_timeout_ms = 15000`).
mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// The whole sidecar configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SidecarConfig {
    /// The workload this sidecar fronts: its namespace, labels and names,
    /// which policies select it by and metrics report.
    pub workload: WorkloadConfig,
    /// Inbound listener and the local application behind it.
    pub inbound: InboundConfig,
    /// Outbound listener the application sends its calls to.
    pub outbound: OutboundConfig,
    /// Admin listener (`/stats/prometheus`, `/healthz/ready`, ...).
    pub admin: AdminConfig,
    /// Limits and timeouts that bound what a peer can make the proxy hold.
    pub limits: Limits,
    /// How long SIGTERM lets in-flight inbound requests finish.
    #[serde(with = "ms", rename = "drain_ms")]
    pub drain: Duration,
    /// Endpoints of services known without discovery, by
    /// `service.namespace`.
    pub static_endpoints: BTreeMap<String, Vec<StaticEndpoint>>,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        SidecarConfig {
            workload: WorkloadConfig::default(),
            inbound: InboundConfig::default(),
            outbound: OutboundConfig::default(),
            admin: AdminConfig::default(),
            limits: Limits::default(),
            drain: Duration::from_secs(5),
            static_endpoints: BTreeMap::new(),
        }
    }
}

/// The workload behind the sidecar.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Kubernetes-style namespace (policies in it apply).
    pub namespace: String,
    /// Workload name, reported as `*_workload` in metrics.
    pub name: String,
    /// The service this workload serves, reported as
    /// `destination_service_name`.
    pub service: String,
    /// Labels that `selector.matchLabels` of policies match.
    pub labels: BTreeMap<String, String>,
    /// Trust domain used for Istio principal matching (`cluster.local`
    /// aliases).
    pub trust_domain: Option<String>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            namespace: "default".to_owned(),
            name: "unknown".to_owned(),
            service: "unknown".to_owned(),
            labels: BTreeMap::new(),
            trust_domain: None,
        }
    }
}

/// Application protocol of a port, as Istio's port naming declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    /// Detect from the first bytes (bounded read with a timeout).
    #[default]
    Auto,
    /// HTTP/1.1 (HTTP/2 from a peer is translated).
    Http,
    /// HTTP/2 with prior knowledge (h2c) to the application.
    Http2,
    /// gRPC: HTTP/2 to the application, trailers kept.
    Grpc,
    /// Opaque TCP; no detection (server-first protocols).
    Tcp,
}

/// Inbound listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// Where the inbound listener binds (Istio: 15006).
    pub listen: SocketAddr,
    /// The application, when the listener is addressed directly (explicit
    /// mode); with transparent interception the original destination's
    /// port selects an entry of `ports` or the application on that port
    /// of 127.0.0.1.
    pub app: SocketAddr,
    /// Protocol of `app`.
    pub protocol: AppProtocol,
    /// Application ports with declared protocols (transparent mode).
    pub ports: BTreeMap<u16, AppProtocol>,
    /// Read the original destination with `SO_ORIGINAL_DST` (transparent
    /// interception by iptables).
    pub transparent: bool,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 15006)),
            app: SocketAddr::from(([127, 0, 0, 1], 8080)),
            protocol: AppProtocol::Auto,
            ports: BTreeMap::new(),
            transparent: false,
        }
    }
}

/// Outbound listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Where the outbound listener binds (Istio: 15001).
    pub listen: SocketAddr,
    /// Read the original destination with `SO_ORIGINAL_DST`.
    pub transparent: bool,
    /// Per-request timeout, response headers included.
    #[serde(with = "ms", rename = "request_timeout_ms")]
    pub request_timeout: Duration,
    /// How many other endpoints a request that could not be delivered
    /// (connect failure, refused stream) is tried on.
    pub retries: u32,
    /// Endpoint choice and outlier ejection.
    pub balance: crate::balance::BalanceConfig,
    /// The service (`name.namespace`) that requests go to when their
    /// authority names none: a sidecar fronting one upstream, as in a
    /// benchmark. Unset: such requests get a 503.
    pub default_service: Option<String>,
    /// What happens to redirected connections whose original destination
    /// is no endpoint of a mesh service (Istio's
    /// `outboundTrafficPolicy.mode`).
    pub traffic_policy: OutboundTrafficPolicy,
}

/// Where redirected traffic to destinations outside the mesh may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OutboundTrafficPolicy {
    /// Only mesh services: such HTTP gets a 503 naming the unknown
    /// service, such TCP is closed.
    #[default]
    #[serde(rename = "REGISTRY_ONLY")]
    RegistryOnly,
    /// Passed through unchanged, as plain TCP from the sidecar to the
    /// original destination, whatever the protocol (Istio's
    /// `PassthroughCluster`); counted under that service name.
    #[serde(rename = "ALLOW_ANY")]
    AllowAny,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 15001)),
            transparent: false,
            request_timeout: Duration::from_secs(15),
            retries: 2,
            balance: crate::balance::BalanceConfig::default(),
            default_service: None,
            traffic_policy: OutboundTrafficPolicy::RegistryOnly,
        }
    }
}

/// Admin listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin listener binds (Istio: 15000); loopback only by
    /// default.
    pub listen: SocketAddr,
    /// Metrics label cardinality bound.
    pub metrics: crate::telemetry::MetricsConfig,
    /// Write one JSON access-log line per request or TCP connection to
    /// standard output.
    pub access_log: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 15000)),
            metrics: crate::telemetry::MetricsConfig::default(),
            access_log: true,
        }
    }
}

/// Bounds on what a client or peer can make the sidecar hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// TLS handshake deadline.
    #[serde(with = "ms", rename = "handshake_timeout_ms")]
    pub handshake_timeout: Duration,
    /// Protocol detection: how long to wait for the first bytes before
    /// treating the connection as opaque TCP.
    #[serde(with = "ms", rename = "detect_timeout_ms")]
    pub detect_timeout: Duration,
    /// Deadline for a client to send a complete request head (slowloris).
    #[serde(with = "ms", rename = "header_read_timeout_ms")]
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes (HTTP/1.1 buffer and
    /// HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Idle TCP connections (no bytes either way) are closed after this.
    #[serde(with = "ms", rename = "tcp_idle_timeout_ms")]
    pub tcp_idle_timeout: Duration,
    /// Concurrent inbound handshakes before new connections wait.
    pub max_handshakes: usize,
    /// How often an open TCP connection's bytes are added to
    /// `istio_tcp_sent_bytes_total` / `istio_tcp_received_bytes_total`, so
    /// that long-lived connections show up before they close.
    #[serde(with = "ms", rename = "tcp_report_interval_ms")]
    pub tcp_report_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            detect_timeout: Duration::from_millis(100),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            tcp_idle_timeout: Duration::from_secs(3600),
            max_handshakes: 256,
            tcp_report_interval: Duration::from_secs(15),
        }
    }
}

/// An endpoint given in the config instead of by discovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEndpoint {
    /// The peer sidecar's inbound address.
    pub address: SocketAddr,
    /// The SPIFFE ID the endpoint must prove.
    pub spiffe_id: String,
}

/// Where the identity comes from when no Workload API is used.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM PKCS#8 private key.
    pub key: PathBuf,
    /// PEM trust bundle of the local trust domain.
    pub bundle: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_traffic_policy_takes_istios_names_and_defaults_to_registry_only() {
        assert_eq!(
            OutboundConfig::default().traffic_policy,
            OutboundTrafficPolicy::RegistryOnly
        );
        let allow: OutboundConfig =
            serde_json::from_str(r#"{"traffic_policy": "ALLOW_ANY"}"#).unwrap();
        assert_eq!(allow.traffic_policy, OutboundTrafficPolicy::AllowAny);
        let registry: OutboundConfig =
            serde_json::from_str(r#"{"traffic_policy": "REGISTRY_ONLY"}"#).unwrap();
        assert_eq!(registry.traffic_policy, OutboundTrafficPolicy::RegistryOnly);
        for bad in ["allow_any", "ANY", ""] {
            let err = serde_json::from_str::<OutboundConfig>(&format!(
                r#"{{"traffic_policy": "{bad}"}}"#
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("unknown variant"), "{bad}: {err}");
            assert!(
                err.contains("ALLOW_ANY"),
                "the error lists the choices: {err}"
            );
        }
    }
}
