//! Admin commands: `entry`, `token`, `agent list|show|evict`, `bundle`,
//! `ca`, `federation`. Each is one request to the server's admin socket.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AdminArgs, Output};
use crate::admin_api::{
    AgentView, AuthorityView, EntrySpec, EntryView, ErrorView, TokenSpec, TokenView,
};

pub(crate) enum AdminCommand {
    Entry(EntryCommand),
    Token(TokenCommand),
    Agent(AgentAction),
    Bundle(BundleCommand),
    Ca(CaCommand),
    PolicyStatus(AdminArgs),
    Federation(super::federation::FederationCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum EntryCommand {
    /// Create an entry.
    Create {
        #[command(flatten)]
        fields: EntryFields,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List entries, optionally filtered.
    List {
        /// Only entries granting this SPIFFE ID.
        #[arg(long)]
        spiffe_id: Option<String>,
        /// Only entries under this parent.
        #[arg(long)]
        parent_id: Option<String>,
        /// Only entries with this selector.
        #[arg(long)]
        selector: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one entry.
    Show {
        /// The entry id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Change an entry; fields not given keep their value.
    Update {
        /// The entry id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        fields: EntryFields,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete an entry.
    Delete {
        /// The entry id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// The fields of `entry create` and `entry update`.
#[derive(Debug, Args)]
pub(crate) struct EntryFields {
    /// The SPIFFE ID granted.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// `TYPE:VALUE`, all required (repeatable).
    #[arg(long = "selector")]
    selectors: Vec<String>,
    /// The node (or node alias) the workload runs under.
    #[arg(long, conflicts_with = "node")]
    parent_id: Option<String>,
    /// A node alias entry: nodes with these selectors get this ID as alias.
    #[arg(long)]
    node: bool,
    /// X509-SVID TTL, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    x509_ttl: Option<Duration>,
    /// JWT-SVID TTL, e.g. `5m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    jwt_ttl: Option<Duration>,
    /// DNS SAN (repeatable).
    #[arg(long = "dns-name")]
    dns_names: Vec<String>,
    /// Federated trust domain (repeatable).
    #[arg(long = "federates-with")]
    federates_with: Vec<String>,
    /// The workload may administer the server.
    #[arg(long)]
    admin: bool,
    /// A hint for the workload.
    #[arg(long)]
    hint: Option<String>,
}

impl EntryFields {
    fn spec(self) -> EntrySpec {
        EntrySpec {
            spiffe_id: self.spiffe_id,
            parent_id: self.parent_id,
            node: self.node,
            selectors: Some(self.selectors).filter(|s| !s.is_empty()),
            x509_svid_ttl: self.x509_ttl.map(|d| d.as_secs().max(1)),
            jwt_svid_ttl: self.jwt_ttl.map(|d| d.as_secs().max(1)),
            dns_names: Some(self.dns_names).filter(|s| !s.is_empty()),
            federates_with: Some(self.federates_with).filter(|s| !s.is_empty()),
            admin: self.admin.then_some(true),
            hint: self.hint,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a single-use join token.
    Generate {
        /// How long it stays valid.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        ttl: Duration,
        /// Also give the node that attests with the token this SPIFFE ID
        /// (a node alias entry; entries may then name it as parent).
        #[arg(long = "spiffe-id", value_name = "ID")]
        spiffe_id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentAction {
    /// List attested agents.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one agent.
    Show {
        /// The agent's node SPIFFE ID.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Evict an agent: its calls are refused until it attests again.
    Evict {
        /// The agent's node SPIFFE ID.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum BundleFormat {
    Pem,
    Spiffe,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Print the trust domain's bundle.
    Show {
        /// PEM certificates or the SPIFFE bundle (JWKS) document.
        #[arg(long, value_enum, default_value_t = BundleFormat::Pem)]
        format: BundleFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyKind {
    X509,
    Jwt,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// List the CA's key slots.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Prepare a new key (published, not yet signing).
    Prepare {
        #[arg(long, value_enum, default_value_t = KeyKind::X509)]
        kind: KeyKind,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Activate the prepared key.
    Activate {
        #[arg(long, value_enum, default_value_t = KeyKind::X509)]
        kind: KeyKind,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Mark an old key as compromised.
    Taint {
        #[arg(long, value_enum, default_value_t = KeyKind::X509)]
        kind: KeyKind,
        /// The key id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a tainted key from the bundle.
    Revoke {
        #[arg(long, value_enum, default_value_t = KeyKind::X509)]
        kind: KeyKind,
        /// The key id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Why an admin command failed: one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminFailure {
    #[error(
        "cannot reach the server's admin socket {path}: {source} (is `mesh-node server` running with this --data-dir?)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("admin API at {addr} over mTLS: {why}")]
    Mtls { addr: String, why: String },
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Server(String),
}

/// Where an admin command sends its request.
#[derive(Debug, Clone)]
pub(crate) enum AdminTarget {
    /// The server's 0600 Unix socket (the server's own user).
    Socket(std::path::PathBuf),
    /// The admin API over mTLS, with this process's SVID from the Workload
    /// API (`SPIFFE_ENDPOINT_SOCKET`); its entry must be marked `admin`.
    Mtls(String),
}

/// One request to the admin API; the body of a 2xx answer.
pub(crate) async fn call(
    target: &AdminTarget,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Bytes, AdminFailure> {
    // The connection task runs detached; it ends with the connection.
    let (mut sender, _connection) = match target {
        AdminTarget::Socket(socket) => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|source| AdminFailure::Connect {
                    path: socket.display().to_string(),
                    source,
                })?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| AdminFailure::Http(e.to_string()))?;
            (
                sender,
                tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }),
            )
        }
        AdminTarget::Mtls(addr) => {
            let stream = mtls_stream(addr).await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(stream)
                .await
                .map_err(|e| AdminFailure::Http(e.to_string()))?;
            (
                sender,
                tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }),
            )
        }
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| AdminFailure::Http(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| AdminFailure::Http("the server did not answer in 30 s".into()))?
        // The whole chain: over mTLS a refused client learns why here.
        .map_err(|e| AdminFailure::Http(spiffe_core::error_chain(&e)))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| AdminFailure::Http(e.to_string()))?
        .to_bytes();
    if status.is_success() {
        Ok(bytes)
    } else {
        let msg = serde_json::from_slice::<ErrorView>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        Err(AdminFailure::Server(msg))
    }
}

/// An mTLS connection to the admin API at `addr`, as this process's
/// workload identity, to the server's own SPIFFE ID in that trust domain.
async fn mtls_stream(addr: &str) -> Result<mtls_tower::MtlsStream, AdminFailure> {
    let fail = |why: String| AdminFailure::Mtls {
        addr: addr.to_owned(),
        why,
    };
    let source = workload_api::X509Source::from_env(workload_api::DEFAULT_CONNECT_WAIT)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let own = spiffe_core::SvidSource::x509_svid(&source)
        .ok_or_else(|| fail("the Workload API withdrew this process's SVID".into()))?;
    let server = spiffe_core::SpiffeId::from_path(own.spiffe_id().trust_domain(), "/server")
        .map_err(|e| fail(e.to_string()))?;
    let config =
        mtls_tower::ClientConfigBuilder::from_source(source, mtls_tower::authorizer::exact(server))
            .alpn_protocols(vec![b"http/1.1".to_vec()])
            .build()
            .map_err(|e| fail(e.to_string()))?;
    let uri: http::Uri = format!("https://{addr}")
        .parse()
        .map_err(|e| fail(format!("address: {e}")))?;
    mtls_tower::MtlsConnector::new(config)
        .connect(uri)
        .await
        .map_err(|e| fail(spiffe_core::error_chain(&e)))
}

pub(super) fn decode<T: DeserializeOwned>(b: &Bytes) -> Result<T, AdminFailure> {
    serde_json::from_slice(b).map_err(|e| AdminFailure::Http(format!("unexpected answer: {e}")))
}

pub(super) fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", percent(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters.
pub(super) fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_entries(out: Output, entries: &[EntryView]) {
    if out == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(entries).unwrap_or_default()
        );
        return;
    }
    if entries.is_empty() {
        println!("no entries");
        return;
    }
    for e in entries {
        println!("Entry ID      : {}", e.id);
        println!("SPIFFE ID     : {}", e.spiffe_id);
        println!("Parent ID     : {}", e.parent_id);
        for s in &e.selectors {
            println!("Selector      : {s}");
        }
        if let Some(t) = e.x509_svid_ttl {
            println!("X509-SVID TTL : {t}s");
        }
        if let Some(t) = e.jwt_svid_ttl {
            println!("JWT-SVID TTL  : {t}s");
        }
        for d in &e.dns_names {
            println!("DNS name      : {d}");
        }
        for f in &e.federates_with {
            println!("FederatesWith : {f}");
        }
        if e.admin {
            println!("Admin         : true");
        }
        if let Some(h) = &e.hint {
            println!("Hint          : {h}");
        }
        println!();
    }
}

pub(super) fn print_one<T: Serialize>(out: Output, v: &T, table: impl FnOnce(&T)) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Table => table(v),
    }
}

fn print_agents(out: Output, agents: &[AgentView]) {
    print_one(out, &agents, |agents| {
        if agents.is_empty() {
            println!("no attested agents");
        }
        for a in *agents {
            println!("SPIFFE ID   : {}", a.spiffe_id);
            println!("Attestor    : {}", a.attestor);
            for s in &a.selectors {
                println!("Selector    : {s}");
            }
            println!("Attested at : {}", a.attested_at);
            println!();
        }
    });
}

fn print_authorities(out: Output, slots: &[AuthorityView]) {
    print_one(out, &slots, |slots| {
        println!(
            "{:<6} {:<9} {:<8} {:<12} {:<12} ID",
            "KIND", "STATE", "TAINTED", "NOT BEFORE", "NOT AFTER"
        );
        for s in *slots {
            println!(
                "{:<6} {:<9} {:<8} {:<12} {:<12} {}",
                s.kind, s.state, s.tainted, s.not_before, s.not_after, s.id
            );
        }
    });
}

async fn execute(cmd: AdminCommand) -> Result<(), AdminFailure> {
    use http::Method;
    match cmd {
        AdminCommand::Federation(cmd) => super::federation::execute(cmd).await?,
        AdminCommand::Entry(EntryCommand::Create { fields, admin }) => {
            let b = call(
                &admin.target(),
                Method::POST,
                "/v1/entries",
                Some(json(&fields.spec())),
            )
            .await?;
            print_entries(admin.output, &[decode(&b)?]);
        }
        AdminCommand::Entry(EntryCommand::List {
            spiffe_id,
            parent_id,
            selector,
            admin,
        }) => {
            let q = query(&[
                ("spiffe_id", spiffe_id.as_deref()),
                ("parent_id", parent_id.as_deref()),
                ("selector", selector.as_deref()),
            ]);
            let b = call(
                &admin.target(),
                Method::GET,
                &format!("/v1/entries{q}"),
                None,
            )
            .await?;
            let entries: Vec<EntryView> = decode(&b)?;
            print_entries(admin.output, &entries);
        }
        AdminCommand::Entry(EntryCommand::Show { id, admin }) => {
            let b = call(
                &admin.target(),
                Method::GET,
                &format!("/v1/entries/{}", percent(&id)),
                None,
            )
            .await?;
            print_entries(admin.output, &[decode(&b)?]);
        }
        AdminCommand::Entry(EntryCommand::Update { id, fields, admin }) => {
            let b = call(
                &admin.target(),
                Method::PUT,
                &format!("/v1/entries/{}", percent(&id)),
                Some(json(&fields.spec())),
            )
            .await?;
            print_entries(admin.output, &[decode(&b)?]);
        }
        AdminCommand::Entry(EntryCommand::Delete { id, admin }) => {
            let b = call(
                &admin.target(),
                Method::DELETE,
                &format!("/v1/entries/{}", percent(&id)),
                None,
            )
            .await?;
            let e: EntryView = decode(&b)?;
            print_one(admin.output, &e, |e| println!("deleted entry {}", e.id));
        }
        AdminCommand::Token(TokenCommand::Generate {
            ttl,
            spiffe_id,
            admin,
        }) => {
            let spec = TokenSpec {
                ttl: ttl.as_secs().max(1),
                spiffe_id,
            };
            let b = call(
                &admin.target(),
                Method::POST,
                "/v1/tokens",
                Some(json(&spec)),
            )
            .await?;
            let t: TokenView = decode(&b)?;
            print_one(admin.output, &t, |t| {
                println!("Token: {}", t.token);
                if let Some(alias) = &t.alias {
                    println!(
                        "Node alias: {} (entry {}, selector {})",
                        alias.spiffe_id,
                        alias.id,
                        alias.selectors.join(" ")
                    );
                }
            });
        }
        AdminCommand::Agent(AgentAction::List { admin }) => {
            let b = call(&admin.target(), Method::GET, "/v1/agents", None).await?;
            let agents: Vec<AgentView> = decode(&b)?;
            print_agents(admin.output, &agents);
        }
        AdminCommand::Agent(AgentAction::Show { id, admin }) => {
            let b = call(
                &admin.target(),
                Method::GET,
                &format!("/v1/agent{}", query(&[("id", Some(&id))])),
                None,
            )
            .await?;
            print_agents(admin.output, &[decode(&b)?]);
        }
        AdminCommand::Agent(AgentAction::Evict { id, admin }) => {
            call(
                &admin.target(),
                Method::DELETE,
                &format!("/v1/agent{}", query(&[("id", Some(&id))])),
                None,
            )
            .await?;
            match admin.output {
                Output::Json => println!("{}", serde_json::json!({ "evicted": id })),
                Output::Table => println!("evicted {id}"),
            }
        }
        AdminCommand::Bundle(BundleCommand::Show { format, admin }) => {
            let f = match format {
                BundleFormat::Pem => "pem",
                BundleFormat::Spiffe => "spiffe",
            };
            let b = call(
                &admin.target(),
                Method::GET,
                &format!("/v1/bundle?format={f}"),
                None,
            )
            .await?;
            print!("{}", String::from_utf8_lossy(&b));
            if matches!(format, BundleFormat::Spiffe) {
                println!();
            }
        }
        AdminCommand::PolicyStatus(admin) => {
            let b = call(&admin.target(), Method::GET, "/v1/policy", None).await?;
            let st: crate::server::PolicyStatus = decode(&b)?;
            print_one(admin.output, &st, |st| {
                println!("Directory : {}", st.dir.as_deref().unwrap_or("(none)"));
                println!("Version   : {}", st.version);
                println!(
                    "Policies  : {} authorization, {} peer authentication, {} request authentication",
                    st.policies[0], st.policies[1], st.policies[2]
                );
                for f in &st.files {
                    println!("File      : {f}");
                }
                if let Some(e) = &st.error {
                    println!("Error     : {e} (the version above stays in force)");
                }
            });
        }
        AdminCommand::Ca(cmd) => {
            let (op, kind, id, admin) = match cmd {
                CaCommand::Show { admin } => {
                    let b = call(&admin.target(), Method::GET, "/v1/ca", None).await?;
                    let slots: Vec<AuthorityView> = decode(&b)?;
                    print_authorities(admin.output, &slots);
                    return Ok(());
                }
                CaCommand::Prepare { kind, admin } => ("prepare", kind, None, admin),
                CaCommand::Activate { kind, admin } => ("activate", kind, None, admin),
                CaCommand::Taint { kind, id, admin } => ("taint", kind, Some(id), admin),
                CaCommand::Revoke { kind, id, admin } => ("revoke", kind, Some(id), admin),
            };
            let kind = match kind {
                KeyKind::X509 => "x509",
                KeyKind::Jwt => "jwt",
            };
            let q = query(&[("kind", Some(kind)), ("id", id.as_deref())]);
            let b = call(
                &admin.target(),
                Method::POST,
                &format!("/v1/ca/{op}{q}"),
                None,
            )
            .await?;
            let slots: Vec<AuthorityView> = decode(&b)?;
            print_authorities(admin.output, &slots);
        }
    }
    Ok(())
}

pub(crate) fn run(cmd: AdminCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mesh-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-node: {e}");
            ExitCode::FAILURE
        }
    }
}
