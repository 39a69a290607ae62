//! The command line: flags → a role or an admin command → an exit code.
//!
//! Admin commands talk to a local server's admin socket, found from
//! `--data-dir` (the server's default when absent) or `--admin-socket`.
//! They print human tables by default and JSON with `--output json`; on
//! any error they print one line to stderr and exit 1.

mod admin;
mod federation;
mod iptables;
mod policy_check;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_SERVER_DATA_DIR;

#[derive(Debug, Parser)]
#[command(name = "mesh-node", version, about = "Zero-trust mesh node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: CA, registry, node API, admin API.
    Server(run::ServerArgs),
    /// Run the node agent, or manage attested agents (list, show, evict).
    Agent(AgentCommand),
    /// Run the sidecar proxy (inbound 15006, outbound 15001, admin 15000).
    Sidecar(run::SidecarArgs),
    /// Run server, agent and the configured sidecars in one process.
    Up(run::UpArgs),
    /// Run the scripted bookinfo mesh on loopback and check every step.
    Demo(DemoArgs),
    /// Print, apply or remove the iptables rules that redirect a
    /// workload's TCP through its sidecar.
    Iptables(iptables::IptablesArgs),
    /// Manage registration entries.
    #[command(subcommand)]
    Entry(admin::EntryCommand),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Show the trust domain's bundle.
    #[command(subcommand)]
    Bundle(admin::BundleCommand),
    /// Inspect and rotate the CA's keys by hand.
    #[command(subcommand)]
    Ca(admin::CaCommand),
    /// Manage federation relationships with other trust domains.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Work with Istio security policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `mesh-node agent`: with no subcommand, runs the agent.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AgentCommand {
    #[command(subcommand)]
    action: Option<admin::AgentAction>,
    #[command(flatten)]
    run: run::AgentArgs,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Decide one request against policy files, as a sidecar would.
    Check(CheckArgs),
    /// Show the server's policy set: version, files, and the last error.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How admin commands find the server and print.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The server's data directory; its admin socket is `admin.sock` there.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_SERVER_DATA_DIR, global = true)]
    pub data_dir: PathBuf,
    /// The admin socket, when it is not in the data directory.
    #[arg(long, value_name = "PATH", global = true)]
    pub admin_socket: Option<PathBuf>,
    /// The admin API over mTLS (the server's `admin_listen`), instead of
    /// the socket: this process's identity comes from the Workload API
    /// (`SPIFFE_ENDPOINT_SOCKET`) and its entry must be marked `admin`.
    #[arg(
        long,
        value_name = "HOST:PORT",
        global = true,
        conflicts_with = "admin_socket"
    )]
    pub admin_addr: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

impl AdminArgs {
    fn target(&self) -> admin::AdminTarget {
        match &self.admin_addr {
            Some(addr) => admin::AdminTarget::Mtls(addr.clone()),
            None => admin::AdminTarget::Socket(
                self.admin_socket
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("admin.sock")),
            ),
        }
    }
}

/// Arguments of `mesh-node demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Leave the mesh running after the steps, until Ctrl-C or SIGTERM.
    #[arg(long)]
    keep: bool,
    /// State directory (default: a fresh temporary one).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Policy directory to load (default: the repository's
    /// mesh-node/demo/policies).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
}

/// One request to a server's admin socket (what the admin commands send);
/// the body of a 2xx answer, or the server's one-line error.
pub async fn admin_call(
    socket: &std::path::Path,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<bytes::Bytes, String> {
    admin::call(
        &admin::AdminTarget::Socket(socket.to_owned()),
        method,
        path,
        body,
    )
    .await
    .map_err(|e| e.to_string())
}

pub(crate) use run::terminated;

/// Output formats of admin commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    Table,
    /// JSON, for scripts.
    Json,
}

/// Arguments of `mesh-node policy check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Policy file or directory (repeatable).
    #[arg(long = "policy", required = true, value_name = "PATH")]
    pub(crate) policies: Vec<PathBuf>,
    /// Namespace of the workload receiving the request.
    #[arg(long, value_name = "NS")]
    pub(crate) workload_namespace: String,
    /// Workload label as KEY=VALUE (repeatable).
    #[arg(long = "workload-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub(crate) workload_labels: Vec<(String, String)>,
    /// Mesh root namespace.
    #[arg(long, value_name = "NS", default_value = "istio-system")]
    pub(crate) root_namespace: String,
    /// Mesh trust domain.
    #[arg(long, value_name = "TD", default_value = "cluster.local")]
    pub(crate) trust_domain: String,
    /// Trust-domain alias (repeatable).
    #[arg(long = "trust-domain-alias", value_name = "TD")]
    pub(crate) trust_domain_aliases: Vec<String>,
    /// Request file (JSON or YAML); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub(crate) request: PathBuf,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// Parses the process's arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Server(args) => run::server(args),
        Command::Sidecar(args) => run::sidecar(args),
        Command::Up(args) => run::up(args),
        Command::Demo(args) => run::demo(crate::demo::DemoOptions {
            keep: args.keep,
            data_dir: args.data_dir,
            policies: args.policies,
        }),
        Command::Iptables(args) => iptables::run(&args),
        Command::Agent(AgentCommand {
            action: Some(action),
            ..
        }) => admin::run(admin::AdminCommand::Agent(action)),
        Command::Agent(AgentCommand { action: None, run }) => run::agent(run),
        Command::Entry(c) => admin::run(admin::AdminCommand::Entry(c)),
        Command::Token(c) => admin::run(admin::AdminCommand::Token(c)),
        Command::Bundle(c) => admin::run(admin::AdminCommand::Bundle(c)),
        Command::Ca(c) => admin::run(admin::AdminCommand::Ca(c)),
        Command::Federation(c) => admin::run(admin::AdminCommand::Federation(c)),
        Command::Policy(PolicyCommand::Status { admin }) => {
            admin::run(admin::AdminCommand::PolicyStatus(admin))
        }
        Command::Policy(PolicyCommand::Check(args)) => match policy_check::run(&args) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mesh-node policy check: {e}");
                ExitCode::from(2)
            }
        },
    }
}
