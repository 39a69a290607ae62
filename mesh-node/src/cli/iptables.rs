//! `mesh-node iptables`: the sidecar's interception rules
//! ([`mesh_sidecar::intercept`]) from flags, printed, applied or removed
//! in the caller's network namespace (run it under `ip netns exec NS` for
//! another one).
//!
//! The flags mirror Istio's `istio-iptables`: the proxy's uid (whose
//! traffic is never redirected), the two listener ports, and the ports
//! left alone each way.

use std::num::NonZeroU16;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use mesh_sidecar::intercept::{self, InboundPorts, InterceptConfig, InterceptError};

/// Arguments of `mesh-node iptables`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["apply", "remove", "print"])))]
pub(crate) struct IptablesArgs {
    /// Print the rules, then install them (replacing any earlier set).
    #[arg(long)]
    apply: bool,
    /// Remove the rules; rules that are not there are not an error.
    #[arg(long)]
    remove: bool,
    /// Only print the commands that would install the rules.
    #[arg(long)]
    print: bool,
    /// The uid the sidecar runs as: its traffic is never redirected
    /// (required with --apply and --print).
    #[arg(long, value_name = "UID")]
    proxy_uid: Option<u32>,
    /// A gid whose traffic is never redirected either.
    #[arg(long, value_name = "GID")]
    proxy_gid: Option<u32>,
    /// The sidecar's inbound listener port.
    #[arg(long, value_name = "PORT", default_value = "15006")]
    inbound_port: NonZeroU16,
    /// The sidecar's outbound listener port.
    #[arg(long, value_name = "PORT", default_value = "15001")]
    outbound_port: NonZeroU16,
    /// Inbound ports not redirected, comma-separated, in addition to the
    /// sidecar's own (15000, 15001, 15006, 15008, 15020, 15021, 15090).
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    exclude_inbound_ports: Vec<u16>,
    /// Outbound ports not redirected, comma-separated.
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    exclude_outbound_ports: Vec<u16>,
    /// Inbound ports redirected: `*` (all) or a comma-separated list; an
    /// empty value redirects no inbound traffic.
    #[arg(long, value_name = "PORTS", default_value = "*", value_parser = parse_inbound_ports)]
    include_inbound_ports: InboundPorts,
    /// Intercept IPv6 too, with `ip6tables`.
    #[arg(long)]
    ipv6: bool,
}

fn parse_inbound_ports(s: &str) -> Result<InboundPorts, String> {
    match s.trim() {
        "*" => Ok(InboundPorts::All),
        "" => Ok(InboundPorts::Only(Vec::new())),
        list => list
            .split(',')
            .map(|p| {
                p.trim().parse::<u16>().map_err(|_| {
                    format!("`{}` is not a port (expected `*` or PORT,PORT…)", p.trim())
                })
            })
            .collect::<Result<Vec<u16>, String>>()
            .map(InboundPorts::Only),
    }
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
enum IptablesError {
    /// `--apply` or `--print` without the proxy's uid.
    #[error(
        "--{action} needs --proxy-uid: the uid the sidecar runs as, whose own traffic must not be redirected"
    )]
    ProxyUid {
        /// `apply` or `print`.
        action: &'static str,
    },
    /// Running the iptables commands failed.
    #[error(transparent)]
    Intercept(#[from] InterceptError),
}

impl IptablesArgs {
    /// The typed configuration the flags describe. Removal does not depend
    /// on the uid or the ports (only on the chain names and programs), so
    /// `--remove` works without `--proxy-uid`.
    fn config(&self) -> Result<InterceptConfig, IptablesError> {
        let uid = match (self.proxy_uid, self.remove) {
            (Some(uid), _) => uid,
            // The uid takes no part in the removal commands.
            (None, true) => 0,
            (None, false) => {
                return Err(IptablesError::ProxyUid {
                    action: if self.apply { "apply" } else { "print" },
                });
            }
        };
        let mut config = InterceptConfig::new(uid);
        config.proxy_gid = self.proxy_gid;
        config.inbound_port = self.inbound_port;
        config.outbound_port = self.outbound_port;
        config
            .exclude_inbound_ports
            .extend(&self.exclude_inbound_ports);
        config.exclude_outbound_ports = self.exclude_outbound_ports.clone();
        config.include_inbound_ports = self.include_inbound_ports.clone();
        if self.ipv6 {
            config.ip6tables = Some("ip6tables".to_owned());
        }
        Ok(config)
    }

    fn execute(&self) -> Result<(), IptablesError> {
        let config = self.config()?;
        if self.remove {
            print!(
                "{}",
                intercept::render(&intercept::remove_commands(&config))
            );
            intercept::remove(&config)?;
        } else {
            print!("{}", intercept::render(&intercept::apply_commands(&config)));
            if self.apply {
                intercept::apply(&config)?;
            }
        }
        Ok(())
    }
}

/// Runs `mesh-node iptables`: 0 when done, 1 with one line on stderr.
pub(crate) fn run(args: &IptablesArgs) -> ExitCode {
    match args.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = e.to_string().replace('\n', "; ");
            eprintln!("mesh-node iptables: {line}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_ports_parse_as_istio_writes_them() {
        assert_eq!(parse_inbound_ports("*"), Ok(InboundPorts::All));
        assert_eq!(parse_inbound_ports(""), Ok(InboundPorts::Only(vec![])));
        assert_eq!(
            parse_inbound_ports("9080, 8080"),
            Ok(InboundPorts::Only(vec![9080, 8080]))
        );
        let err = parse_inbound_ports("9080,http").unwrap_err();
        assert!(err.contains("`http` is not a port"), "{err}");
    }
}
