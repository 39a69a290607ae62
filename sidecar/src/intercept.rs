//! Transparent interception, as Istio's sidecar does it: iptables `nat`
//! rules REDIRECT the application's outbound TCP to the sidecar's outbound
//! listener and the TCP arriving for the application to its inbound
//! listener; the sidecar reads where each connection was going with
//! [`original_dst`].
//!
//! The rules live in four chains of our own, named after
//! [`InterceptConfig::chain_prefix`] as Istio names its `ISTIO_*` chains:
//!
//! | chain              | entered from    | does                                            |
//! |--------------------|-----------------|-------------------------------------------------|
//! | `MESH_INBOUND`     | `PREROUTING`    | skips excluded ports, sends the rest on         |
//! | `MESH_IN_REDIRECT` | `MESH_INBOUND`  | `REDIRECT` to the inbound port                  |
//! | `MESH_OUTPUT`      | `OUTPUT`        | skips the proxy's uid, `lo` and excluded ports  |
//! | `MESH_REDIRECT`    | `MESH_OUTPUT`   | `REDIRECT` to the outbound port                 |
//!
//! What is **not** redirected on the way out:
//!
//! - traffic of the proxy's uid (and gid, if set): the sidecar's own
//!   upstream connections, which would otherwise loop back into it;
//! - traffic leaving through `lo`, that is to a loopback address
//!   (`127.0.0.0/8`, `::1`) **or to one of the host's own addresses**, which
//!   Linux routes through `lo` too. An application calling itself is not
//!   intercepted, as in Istio. Istio additionally sends the *proxy's*
//!   traffic to its own pod address back into the inbound chain; we leave
//!   that rule out, because our outbound side dials a sidecar's inbound
//!   listener directly ([`crate::endpoint::Target`]) and never needs it;
//! - destination ports in [`InterceptConfig::exclude_outbound_ports`].
//!
//! The hooks into `PREROUTING` and `OUTPUT` are added last, so traffic only
//! enters the chains once they are complete, and removed first.
//!
//! [`apply_commands`] and [`remove_commands`] are the exact argv lists;
//! [`render`] prints them as shell lines; [`apply`] and [`remove`] (or a
//! [`Runner`], which can work inside a network namespace) run them.

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The destination the client dialled before an iptables `REDIRECT` sent
/// the connection to us (`SO_ORIGINAL_DST`, or `IP6T_SO_ORIGINAL_DST` for
/// an IPv6 connection).
///
/// The kernel answers from its connection tracking entry. For a connection
/// that was **not** redirected it returns the stream's own local address,
/// so a caller that gets `stream.local_addr()` back was dialled directly
/// (a listener that must only see redirected traffic can refuse it). Where
/// connection tracking is not active at all (no `nat` rules in the network
/// namespace) the call fails with `ENOENT` ([`io::ErrorKind::NotFound`]).
///
/// An IPv4 connection accepted on a dual-stack IPv6 socket (local address
/// `::ffff:a.b.c.d`) is answered as an IPv4 address.
pub fn original_dst(stream: &tokio::net::TcpStream) -> io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(stream);
    let raw = match stream.local_addr()? {
        SocketAddr::V6(local) if local.ip().to_ipv4_mapped().is_none() => {
            socket.original_dst_v6()?
        }
        _ => socket.original_dst_v4()?,
    };
    raw.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the original destination is not an IP socket address",
        )
    })
}

/// The ports the sidecar itself serves, as Istio reserves them; inbound
/// traffic to them reaches the sidecar directly instead of being
/// redirected: admin (15000), outbound (15001), inbound (15006), HBONE
/// (15008), merged metrics (15020), health (15021) and proxy metrics
/// (15090).
pub const DEFAULT_EXCLUDE_INBOUND_PORTS: [u16; 7] =
    [15000, 15001, 15006, 15008, 15020, 15021, 15090];

/// Where and how traffic is intercepted.
///
/// There is no `Default`: the proxy's uid has no safe default (a wrong one
/// makes the sidecar's own connections loop back into it), so it is a
/// required field in configuration files and the argument of
/// [`InterceptConfig::new`], which fills in every other default.
///
/// ```
/// use mesh_sidecar::intercept::InterceptConfig;
///
/// let config: InterceptConfig = serde_json::from_str(r#"{"proxy_uid": 1337}"#).unwrap();
/// assert_eq!(config, InterceptConfig::new(1337));
/// assert_eq!(config.outbound_port.get(), 15001);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InterceptConfig {
    /// The sidecar's inbound listener, where inbound TCP is redirected
    /// (default 15006).
    #[serde(default = "default_inbound_port")]
    pub inbound_port: NonZeroU16,
    /// The sidecar's outbound listener, where the application's outbound
    /// TCP is redirected (default 15001). Redirected connections arrive on
    /// the loopback address, so the listener can bind `127.0.0.1`/`::1`.
    #[serde(default = "default_outbound_port")]
    pub outbound_port: NonZeroU16,
    /// The uid the sidecar runs as; its traffic is never redirected.
    pub proxy_uid: u32,
    /// A gid whose traffic is never redirected either.
    #[serde(default)]
    pub proxy_gid: Option<u32>,
    /// Inbound destination ports that are not redirected (default
    /// [`DEFAULT_EXCLUDE_INBOUND_PORTS`]). Exclusion wins over
    /// [`InterceptConfig::include_inbound_ports`].
    #[serde(default = "default_exclude_inbound_ports")]
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports that are not redirected (default none).
    #[serde(default)]
    pub exclude_outbound_ports: Vec<u16>,
    /// Inbound destination ports that are redirected: `"*"` (all, the
    /// default) or a list.
    #[serde(default)]
    pub include_inbound_ports: InboundPorts,
    /// The prefix of our chains' names (default `MESH`).
    #[serde(default)]
    pub chain_prefix: ChainPrefix,
    /// The `iptables` program, a name on `PATH` or a path (default
    /// `iptables`).
    #[serde(default = "default_iptables")]
    pub iptables: String,
    /// The `ip6tables` program; when unset (the default) **IPv6 traffic is
    /// not intercepted**, so set it wherever the workload has IPv6.
    #[serde(default)]
    pub ip6tables: Option<String>,
}

fn default_inbound_port() -> NonZeroU16 {
    NonZeroU16::new(15006).expect("15006 is not zero")
}

fn default_outbound_port() -> NonZeroU16 {
    NonZeroU16::new(15001).expect("15001 is not zero")
}

fn default_exclude_inbound_ports() -> Vec<u16> {
    DEFAULT_EXCLUDE_INBOUND_PORTS.to_vec()
}

fn default_iptables() -> String {
    "iptables".to_owned()
}

impl InterceptConfig {
    /// The defaults, exempting the traffic of `proxy_uid`.
    pub fn new(proxy_uid: u32) -> InterceptConfig {
        InterceptConfig {
            inbound_port: default_inbound_port(),
            outbound_port: default_outbound_port(),
            proxy_uid,
            proxy_gid: None,
            exclude_inbound_ports: default_exclude_inbound_ports(),
            exclude_outbound_ports: Vec::new(),
            include_inbound_ports: InboundPorts::All,
            chain_prefix: ChainPrefix::default(),
            iptables: default_iptables(),
            ip6tables: None,
        }
    }
}

/// Which inbound destination ports are redirected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InboundPorts {
    /// Every port (written `"*"`), except the excluded ones.
    #[default]
    All,
    /// Only these ports, except the excluded ones; an empty list redirects
    /// nothing.
    Only(Vec<u16>),
}

impl<'de> Deserialize<'de> for InboundPorts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = InboundPorts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"*\" or a list of ports")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InboundPorts, E> {
                if v == "*" {
                    Ok(InboundPorts::All)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<InboundPorts, A::Error> {
                let mut ports = Vec::new();
                while let Some(port) = seq.next_element::<u16>()? {
                    ports.push(port);
                }
                Ok(InboundPorts::Only(ports))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The prefix of our chains' names: 1 to [`ChainPrefix::MAX_LEN`] ASCII
/// letters, digits, `_` or `-`, starting with a letter, so that every chain
/// name fits iptables' 28-character limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ChainPrefix(String);

impl ChainPrefix {
    /// The longest prefix: 28 characters minus the longest suffix,
    /// `_IN_REDIRECT`.
    pub const MAX_LEN: usize = 16;

    /// The prefix as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ChainPrefix {
    fn default() -> Self {
        ChainPrefix("MESH".to_owned())
    }
}

impl fmt::Display for ChainPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ChainPrefix {
    type Err = ChainPrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let reason = if s.is_empty() || s.len() > ChainPrefix::MAX_LEN {
            Some("must be 1 to 16 characters long")
        } else if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            Some("must start with an ASCII letter")
        } else if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Some("may only hold ASCII letters, digits, '_' and '-'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ChainPrefixError {
                prefix: s.to_owned(),
                reason,
            }),
            None => Ok(ChainPrefix(s.to_owned())),
        }
    }
}

impl TryFrom<String> for ChainPrefix {
    type Error = ChainPrefixError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A chain prefix iptables would not accept as part of a chain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chain prefix {prefix:?}: {reason}")]
pub struct ChainPrefixError {
    prefix: String,
    reason: &'static str,
}

/// Our four chains' names.
struct Chains {
    inbound: String,
    in_redirect: String,
    output: String,
    redirect: String,
}

impl Chains {
    fn new(prefix: &ChainPrefix) -> Chains {
        Chains {
            inbound: format!("{prefix}_INBOUND"),
            in_redirect: format!("{prefix}_IN_REDIRECT"),
            output: format!("{prefix}_OUTPUT"),
            redirect: format!("{prefix}_REDIRECT"),
        }
    }

    fn all(&self) -> [&str; 4] {
        [
            &self.inbound,
            &self.redirect,
            &self.in_redirect,
            &self.output,
        ]
    }
}

/// Seconds iptables waits for the xtables lock another program holds.
const LOCK_WAIT_SECS: &str = "5";

/// `PROGRAM -w 5 -t nat RULE`, the rule split at its spaces (no word of
/// ours holds one: chain prefixes are checked, the rest are numbers and
/// fixed words).
fn nat(program: &str, rule: &str) -> Vec<String> {
    [program, "-w", LOCK_WAIT_SECS, "-t", "nat"]
        .into_iter()
        .chain(rule.split_whitespace())
        .map(str::to_owned)
        .collect()
}

/// `ports` without repeats, in their first order.
fn unique(ports: &[u16]) -> Vec<u16> {
    let mut seen = Vec::new();
    for port in ports {
        if !seen.contains(port) {
            seen.push(*port);
        }
    }
    seen
}

/// The commands that install the rules (`nat` table), for `iptables` and
/// then, if configured, `ip6tables`: create our chains, fill them, then
/// hook them into `PREROUTING` and `OUTPUT`. They expect none of our chains
/// to exist; [`apply`] runs [`remove_commands`] first.
pub fn apply_commands(config: &InterceptConfig) -> Vec<Vec<String>> {
    let chains = Chains::new(&config.chain_prefix);
    let mut rules: Vec<String> = chains.all().map(|chain| format!("-N {chain}")).to_vec();
    let Chains {
        inbound,
        in_redirect,
        output,
        redirect,
    } = &chains;
    let (to_outbound, to_inbound) = (config.outbound_port, config.inbound_port);
    rules.push(format!(
        "-A {redirect} -p tcp -j REDIRECT --to-ports {to_outbound}"
    ));
    rules.push(format!(
        "-A {in_redirect} -p tcp -j REDIRECT --to-ports {to_inbound}"
    ));

    for port in unique(&config.exclude_inbound_ports) {
        rules.push(format!("-A {inbound} -p tcp --dport {port} -j RETURN"));
    }
    match &config.include_inbound_ports {
        InboundPorts::All => rules.push(format!("-A {inbound} -p tcp -j {in_redirect}")),
        InboundPorts::Only(ports) => {
            for port in unique(ports) {
                rules.push(format!(
                    "-A {inbound} -p tcp --dport {port} -j {in_redirect}"
                ));
            }
        }
    }

    let uid = config.proxy_uid;
    rules.push(format!("-A {output} -m owner --uid-owner {uid} -j RETURN"));
    if let Some(gid) = config.proxy_gid {
        rules.push(format!("-A {output} -m owner --gid-owner {gid} -j RETURN"));
    }
    rules.push(format!("-A {output} -o lo -j RETURN"));
    for port in unique(&config.exclude_outbound_ports) {
        rules.push(format!("-A {output} -p tcp --dport {port} -j RETURN"));
    }
    rules.push(format!("-A {output} -j {redirect}"));

    rules.push(format!("-A PREROUTING -p tcp -j {inbound}"));
    rules.push(format!("-A OUTPUT -p tcp -j {output}"));
    for_each_program(config, &rules)
}

/// The commands that take the rules out again: unhook our chains, flush
/// them all (they refer to each other), then delete them. On a host
/// without our rules each of them fails with a "does not exist" message,
/// which [`remove`] does not count as an error; run by hand, ignore those.
pub fn remove_commands(config: &InterceptConfig) -> Vec<Vec<String>> {
    let chains = Chains::new(&config.chain_prefix);
    let mut rules = vec![
        format!("-D PREROUTING -p tcp -j {}", chains.inbound),
        format!("-D OUTPUT -p tcp -j {}", chains.output),
    ];
    for flag in ["-F", "-X"] {
        for chain in chains.all() {
            rules.push(format!("{flag} {chain}"));
        }
    }
    for_each_program(config, &rules)
}

/// `rules` for `iptables`, then for `ip6tables` if configured.
fn for_each_program(config: &InterceptConfig, rules: &[String]) -> Vec<Vec<String>> {
    std::iter::once(config.iptables.as_str())
        .chain(config.ip6tables.as_deref())
        .flat_map(|program| rules.iter().map(move |rule| nat(program, rule)))
        .collect()
}

/// The commands as shell lines, one per command, each argument quoted
/// where the shell would otherwise read it differently.
pub fn render(commands: &[Vec<String>]) -> String {
    let mut text = String::new();
    for argv in commands {
        let words: Vec<String> = argv.iter().map(|arg| shell_quote(arg)).collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    text
}

fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:,=+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Why the rules could not be applied or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InterceptError {
    /// The command could not be started (program missing, not allowed).
    #[error("`{command}` could not be started: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// The command did not finish in time and was killed.
    #[error("`{command}` did not finish within {after:?}")]
    TimedOut {
        /// The command line.
        command: String,
        /// The limit it ran into.
        after: Duration,
    },
}

/// Installs the rules on this host (in the caller's network namespace);
/// see [`Runner::apply`].
pub fn apply(config: &InterceptConfig) -> Result<(), InterceptError> {
    Runner::new().apply(config)
}

/// Removes the rules from this host (in the caller's network namespace);
/// see [`Runner::remove`].
pub fn remove(config: &InterceptConfig) -> Result<(), InterceptError> {
    Runner::new().remove(config)
}

/// Runs the commands, here or inside a named network namespace.
///
/// Each command runs as a child process and blocks the calling thread
/// until it ends (at most [`Runner::with_timeout`], 30 s by default); async
/// callers run it on a blocking thread.
#[derive(Debug, Clone)]
pub struct Runner {
    netns: Option<String>,
    timeout: Duration,
}

impl Default for Runner {
    fn default() -> Self {
        Runner::new()
    }
}

impl Runner {
    /// Runs commands in the caller's network namespace.
    pub fn new() -> Runner {
        Runner {
            netns: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Runs every command as `ip netns exec NAME …`, inside the named
    /// network namespace (as made by `ip netns add`).
    pub fn in_netns(mut self, name: impl Into<String>) -> Runner {
        self.netns = Some(name.into());
        self
    }

    /// How long one command may take before it is killed.
    pub fn with_timeout(mut self, timeout: Duration) -> Runner {
        self.timeout = timeout;
        self
    }

    /// Installs the rules: first removes any left by an earlier run (so it
    /// can be run again), then runs [`apply_commands`]. If a command fails,
    /// what was installed is removed again and the first failure returned.
    pub fn apply(&self, config: &InterceptConfig) -> Result<(), InterceptError> {
        self.remove(config)?;
        for argv in apply_commands(config) {
            if let Err(e) = self.run(&argv) {
                let _ = self.remove(config);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes the rules by running [`remove_commands`]. Rules and chains
    /// that do not exist are not an error, so removing twice, or from a
    /// host that never had the rules, succeeds.
    pub fn remove(&self, config: &InterceptConfig) -> Result<(), InterceptError> {
        for argv in remove_commands(config) {
            match self.run(&argv) {
                Err(InterceptError::Failed { stderr, .. }) if is_absent(&stderr) => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn run(&self, argv: &[String]) -> Result<(), InterceptError> {
        let prefix: Vec<String> = match &self.netns {
            Some(ns) => ["ip", "netns", "exec", ns.as_str()]
                .map(str::to_owned)
                .to_vec(),
            None => Vec::new(),
        };
        let full: Vec<String> = prefix.into_iter().chain(argv.iter().cloned()).collect();
        let command = render(std::slice::from_ref(&full)).trim_end().to_owned();
        let Some((program, args)) = full.split_first() else {
            return Ok(());
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| InterceptError::Spawn {
                command: command.clone(),
                source,
            })?;
        let mut pipe = child.stderr.take();
        let drain = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe.as_mut() {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(InterceptError::TimedOut {
                        command,
                        after: self.timeout,
                    });
                }
                Err(source) => return Err(InterceptError::Spawn { command, source }),
            }
        };
        let stderr = drain.join().unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(InterceptError::Failed {
                command,
                status,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            })
        }
    }
}

/// Whether iptables failed because the rule or chain is not there, as
/// iptables-nft and iptables-legacy word it (1.8).
fn is_absent(stderr: &str) -> bool {
    [
        "does not exist",
        "No chain/target/match by that name",
        "does a matching rule exist",
        "Couldn't load target",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> InterceptConfig {
        InterceptConfig::new(1337)
    }

    /// The lines of `commands` without the common `iptables -w 5 -t nat`.
    fn lines(commands: &[Vec<String>]) -> Vec<String> {
        render(commands)
            .lines()
            .map(|l| {
                l.strip_prefix("iptables -w 5 -t nat ")
                    .unwrap_or(l)
                    .to_owned()
            })
            .collect()
    }

    fn position(lines: &[String], line: &str) -> usize {
        lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line:?} in {lines:#?}"))
    }

    #[test]
    fn default_rules_render_as_documented() {
        assert_eq!(
            render(&apply_commands(&config())),
            "\
iptables -w 5 -t nat -N MESH_INBOUND
iptables -w 5 -t nat -N MESH_REDIRECT
iptables -w 5 -t nat -N MESH_IN_REDIRECT
iptables -w 5 -t nat -N MESH_OUTPUT
iptables -w 5 -t nat -A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001
iptables -w 5 -t nat -A MESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15000 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15001 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15006 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15008 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15020 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15021 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp --dport 15090 -j RETURN
iptables -w 5 -t nat -A MESH_INBOUND -p tcp -j MESH_IN_REDIRECT
iptables -w 5 -t nat -A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables -w 5 -t nat -A MESH_OUTPUT -o lo -j RETURN
iptables -w 5 -t nat -A MESH_OUTPUT -j MESH_REDIRECT
iptables -w 5 -t nat -A PREROUTING -p tcp -j MESH_INBOUND
iptables -w 5 -t nat -A OUTPUT -p tcp -j MESH_OUTPUT
"
        );
        assert_eq!(
            render(&remove_commands(&config())),
            "\
iptables -w 5 -t nat -D PREROUTING -p tcp -j MESH_INBOUND
iptables -w 5 -t nat -D OUTPUT -p tcp -j MESH_OUTPUT
iptables -w 5 -t nat -F MESH_INBOUND
iptables -w 5 -t nat -F MESH_REDIRECT
iptables -w 5 -t nat -F MESH_IN_REDIRECT
iptables -w 5 -t nat -F MESH_OUTPUT
iptables -w 5 -t nat -X MESH_INBOUND
iptables -w 5 -t nat -X MESH_REDIRECT
iptables -w 5 -t nat -X MESH_IN_REDIRECT
iptables -w 5 -t nat -X MESH_OUTPUT
"
        );
    }

    #[test]
    fn chains_are_complete_before_they_are_hooked() {
        let lines = lines(&apply_commands(&config()));
        let hooks = position(&lines, "-A PREROUTING -p tcp -j MESH_INBOUND")
            .min(position(&lines, "-A OUTPUT -p tcp -j MESH_OUTPUT"));
        assert_eq!(hooks, lines.len() - 2, "hooks come last: {lines:#?}");
        assert!(lines[..4].iter().all(|l| l.starts_with("-N ")));
    }

    #[test]
    fn the_proxy_uid_and_gid_return_before_the_redirect() {
        let mut config = config();
        config.proxy_gid = Some(1338);
        config.exclude_outbound_ports = vec![5432, 5432, 6379];
        let lines = lines(&apply_commands(&config));
        let redirect = position(&lines, "-A MESH_OUTPUT -j MESH_REDIRECT");
        for exempt in [
            "-A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-A MESH_OUTPUT -m owner --gid-owner 1338 -j RETURN",
            "-A MESH_OUTPUT -o lo -j RETURN",
            "-A MESH_OUTPUT -p tcp --dport 5432 -j RETURN",
            "-A MESH_OUTPUT -p tcp --dport 6379 -j RETURN",
        ] {
            assert!(position(&lines, exempt) < redirect, "{exempt}");
        }
        // The uid rule is the first in the chain; repeats are dropped.
        assert!(
            lines
                .iter()
                .find(|l| l.starts_with("-A MESH_OUTPUT"))
                .unwrap()
                .contains("uid")
        );
        assert_eq!(lines.iter().filter(|l| l.contains("5432")).count(), 1);
    }

    #[test]
    fn inbound_exclusions_come_before_included_ports() {
        let mut config = config();
        config.exclude_inbound_ports = vec![22];
        config.include_inbound_ports = InboundPorts::Only(vec![9080, 22]);
        let lines = lines(&apply_commands(&config));
        let inbound: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with("-A MESH_INBOUND"))
            .map(String::as_str)
            .collect();
        assert_eq!(
            inbound,
            [
                "-A MESH_INBOUND -p tcp --dport 22 -j RETURN",
                "-A MESH_INBOUND -p tcp --dport 9080 -j MESH_IN_REDIRECT",
                "-A MESH_INBOUND -p tcp --dport 22 -j MESH_IN_REDIRECT",
            ]
        );
        // No catch-all: other ports are not redirected.
        assert!(!lines.contains(&"-A MESH_INBOUND -p tcp -j MESH_IN_REDIRECT".to_owned()));
    }

    #[test]
    fn ports_prefix_and_programs_come_from_the_config() {
        let mut config = config();
        config.inbound_port = NonZeroU16::new(16006).unwrap();
        config.outbound_port = NonZeroU16::new(16001).unwrap();
        config.chain_prefix = "SC1".parse().unwrap();
        config.iptables = "/usr/sbin/iptables-legacy".to_owned();
        config.ip6tables = Some("ip6tables".to_owned());
        let apply = apply_commands(&config);
        let text = render(&apply);
        assert!(text.contains("-A SC1_REDIRECT -p tcp -j REDIRECT --to-ports 16001\n"));
        assert!(text.contains("-A SC1_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006\n"));
        assert!(!text.contains("MESH"));
        // The same rules for each family, IPv4 first.
        let (v4, v6) = apply.split_at(apply.len() / 2);
        assert!(v4.iter().all(|a| a[0] == "/usr/sbin/iptables-legacy"));
        assert!(v6.iter().all(|a| a[0] == "ip6tables"));
        assert!(v4.iter().zip(v6).all(|(a, b)| a[1..] == b[1..]));
        let remove = remove_commands(&config);
        assert_eq!(remove.len(), 20);
        assert_eq!(remove[10][0], "ip6tables");
    }

    #[test]
    fn removal_unhooks_flushes_then_deletes_and_adds_nothing() {
        let removal = lines(&remove_commands(&config()));
        let verbs: Vec<&str> = removal.iter().map(|l| &l[..2]).collect();
        assert_eq!(
            verbs,
            ["-D", "-D", "-F", "-F", "-F", "-F", "-X", "-X", "-X", "-X"]
        );
        // Every chain apply creates is deleted, every hook it adds removed.
        for line in lines(&apply_commands(&config())) {
            if let Some(chain) = line.strip_prefix("-N ") {
                assert!(removal.contains(&format!("-X {chain}")));
            }
            if let Some(hook) = line
                .strip_prefix("-A PREROUTING ")
                .or(line.strip_prefix("-A OUTPUT "))
            {
                assert!(
                    removal
                        .iter()
                        .any(|l| l.starts_with("-D ") && l.ends_with(hook))
                );
            }
        }
        // The list does not depend on what is installed: removing twice
        // runs the same commands, whose "absent" failures are ignored.
        assert_eq!(remove_commands(&config()), remove_commands(&config()));
    }

    #[test]
    fn absent_rules_and_chains_are_recognised_in_both_backends() {
        for absent in [
            "iptables v1.8.9 (nf_tables): Chain 'MESH_INBOUND' does not exist",
            "iptables: No chain/target/match by that name.",
            "iptables: Bad rule (does a matching rule exist in that chain?).",
            "iptables v1.8.9 (legacy): Couldn't load target `MESH_INBOUND':No such file or directory",
        ] {
            assert!(is_absent(absent), "{absent}");
        }
        for real in [
            "iptables v1.8.9 (nf_tables):  CHAIN_DEL failed (Device or resource busy): chain MESH_OUTPUT",
            "iptables: Too many links.",
            "Another app is currently holding the xtables lock.",
            "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
        ] {
            assert!(!is_absent(real), "{real}");
        }
    }

    #[test]
    fn a_failing_command_is_named_with_its_stderr() {
        let mut config = config();
        config.iptables = "sh".to_owned();
        // `sh -w …` fails on its unknown option: the error names the
        // command and carries what it said.
        let err = Runner::new().apply(&config).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("`sh -w 5 -t nat -D PREROUTING"), "{text}");
        assert!(
            matches!(err, InterceptError::Failed { ref stderr, .. } if !stderr.is_empty()),
            "{err:?}"
        );
        config.iptables = "/nonexistent/iptables".to_owned();
        let err = remove(&config).unwrap_err();
        assert!(matches!(err, InterceptError::Spawn { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/iptables"), "{err}");
    }

    #[test]
    fn a_hung_command_is_killed_at_the_limit() {
        let runner = Runner::new().with_timeout(Duration::from_millis(200));
        let start = Instant::now();
        let err = runner
            .run(&["sleep".to_owned(), "10".to_owned()])
            .unwrap_err();
        assert!(matches!(err, InterceptError::TimedOut { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_netns_runner_prefixes_ip_netns_exec() {
        let mut config = config();
        config.iptables = "/nonexistent/iptables".to_owned();
        let err = Runner::new()
            .in_netns("no-such-ns-e1b7")
            .remove(&config)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`ip netns exec no-such-ns-e1b7 /nonexistent/iptables -w 5"),
            "{err}"
        );
    }

    #[test]
    fn rendering_quotes_what_the_shell_would_split() {
        let commands = vec![vec![
            "/opt/my tools/iptables".to_owned(),
            "it's".to_owned(),
            String::new(),
        ]];
        assert_eq!(
            render(&commands),
            "'/opt/my tools/iptables' 'it'\\''s' ''\n"
        );
    }

    #[test]
    fn config_from_json_requires_the_uid_and_knows_its_fields() {
        let full: InterceptConfig = serde_json::from_str(
            r#"{"inbound_port": 16006, "outbound_port": 16001, "proxy_uid": 1337,
                "proxy_gid": 1338, "exclude_inbound_ports": [22],
                "exclude_outbound_ports": [5432], "include_inbound_ports": [9080],
                "chain_prefix": "SC1", "iptables": "iptables-legacy",
                "ip6tables": "ip6tables-legacy"}"#,
        )
        .unwrap();
        assert_eq!(full.include_inbound_ports, InboundPorts::Only(vec![9080]));
        assert_eq!(full.chain_prefix.as_str(), "SC1");
        let star: InterceptConfig =
            serde_json::from_str(r#"{"proxy_uid": 1, "include_inbound_ports": "*"}"#).unwrap();
        assert_eq!(star.include_inbound_ports, InboundPorts::All);
        for (bad, says) in [
            (r#"{}"#, "missing field `proxy_uid`"),
            (
                r#"{"proxy_uid": 1, "proxy_port": 2}"#,
                "unknown field `proxy_port`",
            ),
            (
                r#"{"proxy_uid": 1, "include_inbound_ports": "80"}"#,
                "\"*\" or a list of ports",
            ),
            (r#"{"proxy_uid": 1, "inbound_port": 0}"#, "nonzero"),
            (
                r#"{"proxy_uid": 1, "chain_prefix": "A B"}"#,
                "invalid chain prefix",
            ),
        ] {
            let err = serde_json::from_str::<InterceptConfig>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn chain_prefixes_fit_iptables_names() {
        for good in ["MESH", "a", "SIDECAR-1_x", "ABCDEFGHIJKLMNOP"] {
            let prefix: ChainPrefix = good.parse().unwrap();
            let longest = format!("{prefix}_IN_REDIRECT");
            assert!(longest.len() <= 28, "{longest}");
        }
        for bad in [
            "",
            "1MESH",
            "-MESH",
            "ME SH",
            "MÉSH",
            "ABCDEFGHIJKLMNOPQ",
            "a!",
        ] {
            assert!(bad.parse::<ChainPrefix>().is_err(), "{bad:?}");
        }
    }
}
