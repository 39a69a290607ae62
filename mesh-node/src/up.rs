//! `mesh-node up`: server, agent and the configured sidecars in one
//! process, meeting through the same seams as separate processes (node
//! API over mTLS, Workload API and feed sockets, admin socket).
//!
//! State lives in one data directory: the server's (CA journal, entries,
//! tokens in SQLite, `admin.sock`) with the agent's under `agent/`, so
//! every admin command given the same `--data-dir` works against it and
//! a restart keeps the CA, entries, tokens and the node's identity.
//!
//! ```toml
//! trust_domain = "example.org"
//! data_dir = ".mesh-node/server"
//!
//! [server]                 # mesh-node server's settings
//! node_api_listen = "127.0.0.1:8081"
//! policy_dir = "policies"
//!
//! [[sidecar]]              # mesh-node sidecar's settings, one table each
//! workload = { namespace = "default", service = "api" }
//! inbound = { listen = "127.0.0.1:15006", app = "127.0.0.1:8080" }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::admin_api::{TokenSpec, TokenView};
use crate::config::{AgentConfig, ConfigError, DEFAULT_SERVER_DATA_DIR, ServerConfig};
use crate::sidecar::{SidecarHandle, SidecarRoleConfig};

/// The top-level settings of `up`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Top {
    trust_domain: String,
    data_dir: PathBuf,
    workload_socket: Option<PathBuf>,
}

impl Default for Top {
    fn default() -> Self {
        Top {
            trust_domain: "example.org".to_owned(),
            data_dir: PathBuf::from(DEFAULT_SERVER_DATA_DIR),
            workload_socket: None,
        }
    }
}

/// The whole `mesh-node up` configuration.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// The trust domain (overrides `[server]`'s).
    pub trust_domain: String,
    /// The server's data directory; the agent's is `agent/` in it.
    pub data_dir: PathBuf,
    /// The Workload API socket (default `<data_dir>/agent/workload.sock`).
    pub workload_socket: Option<PathBuf>,
    /// The server's settings.
    pub server: ServerConfig,
    /// The sidecars to run; their identity and feed default to the
    /// embedded agent's sockets.
    pub sidecars: Vec<SidecarRoleConfig>,
}

impl Default for UpConfig {
    fn default() -> Self {
        let top = Top::default();
        UpConfig {
            trust_domain: top.trust_domain,
            data_dir: top.data_dir,
            workload_socket: None,
            server: ServerConfig::default(),
            sidecars: Vec::new(),
        }
    }
}

impl UpConfig {
    /// Reads the file, or defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        Self::parse(path, &crate::config::read_text(path)?)
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let err = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().trim().to_owned(),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(err)?;
        let server: ServerConfig = match table.remove("server") {
            Some(v) => v.try_into().map_err(err)?,
            None => ServerConfig::default(),
        };
        let mut sidecars = Vec::new();
        if let Some(v) = table.remove("sidecar") {
            let toml::Value::Array(items) = v else {
                return Err(ConfigError::Invalid {
                    field: "sidecar",
                    message: "expected [[sidecar]] tables".to_owned(),
                });
            };
            for item in items {
                let toml::Value::Table(t) = item else {
                    return Err(ConfigError::Invalid {
                        field: "sidecar",
                        message: "expected [[sidecar]] tables".to_owned(),
                    });
                };
                sidecars.push(SidecarRoleConfig::from_table(path, t)?);
            }
        }
        let top: Top = toml::Value::Table(table).try_into().map_err(err)?;
        Ok(UpConfig {
            trust_domain: top.trust_domain,
            data_dir: top.data_dir,
            workload_socket: top.workload_socket,
            server,
            sidecars,
        })
    }
}

/// Why `up` could not start.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The server did not start.
    #[error("server: {0}")]
    Server(String),
    /// The agent did not start.
    #[error("agent: {0}")]
    Agent(String),
    /// A sidecar did not start.
    #[error("sidecar {index}: {message}")]
    Sidecar {
        /// Its position in the config.
        index: usize,
        /// Why.
        message: String,
    },
}

/// What `up` is running.
#[derive(Debug)]
pub struct UpHandle {
    /// The server.
    pub server: crate::server::ServerHandle,
    /// The embedded agent.
    pub agent: crate::agent::AgentHandle,
    /// The sidecars, in config order.
    pub sidecars: Vec<SidecarHandle>,
    /// The data directory.
    pub data_dir: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
}

impl UpHandle {
    /// Stops everything: sidecars drain first (inbound closes, in-flight
    /// requests finish), then the agent and the server stop.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// What a user needs next, as lines to print.
    pub fn summary(&self) -> String {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let mut out = String::new();
        out.push_str(&format!(
            "mesh-node up: trust domain {}, state in {}\n",
            self.agent.node_id.trust_domain(),
            abs(&self.data_dir).display()
        ));
        out.push_str(&format!(
            "  export SPIFFE_ENDPOINT_SOCKET=unix://{}\n",
            abs(&self.agent.workload_socket).display()
        ));
        out.push_str(&format!("  node ID        {}\n", self.agent.node_id));
        out.push_str(&format!("  node API       {}\n", self.server.node_api_addr));
        out.push_str(&format!(
            "  admin socket   {}\n",
            abs(&self.server.admin_socket).display()
        ));
        if let Some(h) = self.server.health_addr {
            out.push_str(&format!(
                "  server admin   http://{h}/metrics  http://{h}/healthz\n"
            ));
        }
        if let Some(a) = self.server.bundle_endpoint_addr {
            out.push_str(&format!("  bundle endpoint https://{a}/\n"));
        }
        for s in &self.sidecars {
            out.push_str(&format!(
                "  sidecar        inbound {}  outbound {}  admin http://{}/\n",
                s.addresses.inbound, s.addresses.outbound, s.addresses.admin
            ));
        }
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        out.push_str(&format!(
            "  give a workload running as you an identity:\n    mesh-node entry create --data-dir {} --spiffe-id spiffe://{}/my-service --selector unix:uid:{uid}\n",
            self.data_dir.display(),
            self.agent.node_id.trust_domain()
        ));
        out
    }
}

/// Starts server, agent and sidecars; the future runs until
/// [`UpHandle::shutdown`] and then stops the agent and the server.
pub async fn build(
    config: UpConfig,
) -> Result<(UpHandle, impl std::future::Future<Output = ()>), UpError> {
    let UpConfig {
        trust_domain,
        data_dir,
        workload_socket,
        mut server,
        sidecars,
    } = config;
    server.trust_domain = trust_domain.clone();
    server.data_dir = data_dir.clone();
    if server.health_listen.is_none() {
        server.health_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    let (server_handle, server_task) = crate::server::build(server)
        .await
        .map_err(|e| UpError::Server(e.to_string()))?;
    let server_task = tokio::spawn(server_task);

    let agent_dir = data_dir.join("agent");
    let bundle_path = data_dir.join("agent-trust-bundle.json");
    std::fs::write(&bundle_path, server_handle.bundle().to_json())
        .map_err(|e| UpError::Agent(format!("{}: {e}", bundle_path.display())))?;
    // A node that attested before keeps its identity; a new one gets a
    // token from the server it runs beside.
    let join_token = if agent_dir.join("node-svid.pem").exists() {
        None
    } else {
        let body = serde_json::to_vec(&TokenSpec {
            ttl: 600,
            spiffe_id: None,
        })
        .map_err(|e| UpError::Agent(e.to_string()))?;
        let bytes = crate::cli::admin_call(
            &server_handle.admin_socket,
            http::Method::POST,
            "/v1/tokens",
            Some(body),
        )
        .await
        .map_err(UpError::Agent)?;
        let token: TokenView =
            serde_json::from_slice(&bytes).map_err(|e| UpError::Agent(e.to_string()))?;
        Some(token.token)
    };
    let agent_config = AgentConfig {
        trust_domain,
        server_address: server_handle.node_api_addr.to_string(),
        trust_bundle_path: Some(bundle_path),
        join_token,
        workload_socket: workload_socket.unwrap_or_else(|| agent_dir.join("workload.sock")),
        feed_socket: Some(agent_dir.join("feed.sock")),
        data_dir: agent_dir,
        ..AgentConfig::default()
    };
    let (agent, agent_task) = crate::agent::build(agent_config)
        .await
        .map_err(|e| UpError::Agent(e.to_string()))?;
    server_handle
        .service
        .set_default_parent(agent.node_id.clone());
    let agent_task = tokio::spawn(agent_task);

    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for (index, mut sidecar) in sidecars.into_iter().enumerate() {
        let sources = &mut sidecar.sources;
        if sources.workload_socket.is_none() && sources.identity_files.is_none() {
            sources.workload_socket = Some(agent.workload_socket.clone());
        }
        if sources.feed_socket.is_none() && sources.policy_dir.is_none() {
            sources.feed_socket = Some(agent.feed_socket.clone());
        }
        let (handle, task) = crate::sidecar::build(sidecar, None, None)
            .await
            .map_err(|e| UpError::Sidecar {
                index,
                message: e.to_string(),
            })?;
        handles.push(handle);
        tasks.push(tokio::spawn(task));
    }
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let handle = UpHandle {
        server: server_handle.clone(),
        agent: agent.clone(),
        sidecars: handles,
        data_dir,
        stop,
    };
    let sidecar_stops: Vec<_> = handle.sidecars.iter().map(|s| s.shutdown.clone()).collect();
    let run = async move {
        let _ = stopped.wait_for(|s| *s).await;
        for s in &sidecar_stops {
            s.shutdown();
        }
        for t in tasks {
            let _ = t.await;
        }
        agent.shutdown();
        let _ = agent_task.await;
        server_handle.shutdown();
        let _ = server_task.await;
    };
    Ok((handle, run))
}
