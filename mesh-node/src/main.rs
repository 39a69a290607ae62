//! `mesh-node`: the reference node binary.
//!
//! Subcommands so far: `policy check`, a dry run of the authorization engine
//! against policy files, in the spirit of `istioctl x authz check`.

mod policy_check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mesh-node", version, about = "Zero-trust mesh node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with Istio security policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Decide one request against policy files, as a sidecar would.
    Check(CheckArgs),
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

fn main() -> ExitCode {
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
