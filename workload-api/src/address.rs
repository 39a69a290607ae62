//! [`EndpointAddress`]: where the Workload API listens, parsed per EP-6.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The environment variable a client falls back to (EP-6).
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// The address of a Workload API endpoint: a Unix socket path or a TCP
/// socket address (EP-2, EP-6).
///
/// Accepted forms: `unix:///abs/path`, `unix:/abs/path`, `tcp://IP:PORT`
/// (IPv6 as `tcp://[::1]:PORT`). Everything else is rejected with the
/// reason, including `unix://host/path`, relative paths, `tcp:IP:PORT`,
/// host names, paths after a TCP address, user info, queries, fragments and
/// control characters.
///
/// ```
/// use workload_api::EndpointAddress;
/// let a: EndpointAddress = "unix:///run/spire/agent.sock".parse()?;
/// assert_eq!(a, EndpointAddress::Unix("/run/spire/agent.sock".into()));
/// assert!("tcp://127.0.0.1:8000/foo".parse::<EndpointAddress>().is_err());
/// # Ok::<(), workload_api::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    /// A Unix domain socket at an absolute path.
    Unix(PathBuf),
    /// A TCP address (IP and port).
    Tcp(SocketAddr),
}

/// Why an endpoint address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// [`ENDPOINT_SOCKET_ENV`] is not set.
    #[error("{ENDPOINT_SOCKET_ENV} is not set")]
    NotSet,
    /// [`ENDPOINT_SOCKET_ENV`] is not valid Unicode.
    #[error("{ENDPOINT_SOCKET_ENV} is not valid Unicode")]
    NotUnicode,
    /// The address is empty.
    #[error("endpoint address is empty")]
    Empty,
    /// A control character (or a space) at this byte offset.
    #[error("endpoint address has a control character or space at byte {position}")]
    ControlCharacter {
        /// Byte offset of the character.
        position: usize,
    },
    /// No `scheme:` prefix.
    #[error("endpoint address has no scheme (expected unix: or tcp:)")]
    MissingScheme,
    /// A scheme other than `unix` or `tcp`.
    #[error("endpoint address scheme {scheme:?} is not unix or tcp")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// The address has a `?query`.
    #[error("endpoint address must not have a query")]
    Query,
    /// The address has a `#fragment`.
    #[error("endpoint address must not have a fragment")]
    Fragment,
    /// A `unix` address names an authority (`unix://host/...`).
    #[error("unix endpoint address must not have an authority, found {authority:?}")]
    UnixAuthority {
        /// The authority found.
        authority: String,
    },
    /// A `unix` address has no path.
    #[error("unix endpoint address has no socket path")]
    UnixEmptyPath,
    /// A `unix` address has a relative path.
    #[error("unix endpoint address path is not absolute")]
    UnixRelativePath,
    /// A `%` escape that is not two hex digits.
    #[error("endpoint address has an invalid percent-encoding")]
    BadPercentEncoding,
    /// A `tcp` address without `//host:port`, such as `tcp:1.2.3.4:80`.
    #[error("tcp endpoint address must be tcp://IP:PORT")]
    TcpNotHierarchical,
    /// A `tcp` address with user info (`user@`).
    #[error("tcp endpoint address must not have user info")]
    TcpUserInfo,
    /// A `tcp` address with a path after the port.
    #[error("tcp endpoint address must not have a path")]
    TcpPath,
    /// A `tcp` host that is not an IP address.
    #[error("tcp endpoint host {host:?} is not an IP address")]
    TcpHostNotIp {
        /// The host found.
        host: String,
    },
    /// A `tcp` address without a port.
    #[error("tcp endpoint address has no port")]
    TcpMissingPort,
    /// A `tcp` port that is not a number in 1..=65535.
    #[error("tcp endpoint port {port:?} is not a valid port")]
    TcpInvalidPort {
        /// The port text found.
        port: String,
    },
}

impl EndpointAddress {
    /// Reads and parses [`ENDPOINT_SOCKET_ENV`]. The only place the crate
    /// reads the environment.
    pub fn from_env() -> Result<Self, AddressError> {
        match std::env::var(ENDPOINT_SOCKET_ENV) {
            Ok(v) => v.parse(),
            Err(std::env::VarError::NotPresent) => Err(AddressError::NotSet),
            Err(std::env::VarError::NotUnicode(_)) => Err(AddressError::NotUnicode),
        }
    }
}

impl FromStr for EndpointAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some(position) = s.find(|c: char| c.is_control() || c.is_whitespace()) {
            return Err(AddressError::ControlCharacter { position });
        }
        let (scheme, rest) = s.split_once(':').ok_or(AddressError::MissingScheme)?;
        if !is_scheme(scheme) {
            return Err(AddressError::MissingScheme);
        }
        if rest.contains('#') {
            return Err(AddressError::Fragment);
        }
        if rest.contains('?') {
            return Err(AddressError::Query);
        }
        match scheme.to_ascii_lowercase().as_str() {
            "unix" => parse_unix(rest),
            "tcp" => parse_tcp(rest),
            _ => Err(AddressError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            }),
        }
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn parse_unix(rest: &str) -> Result<EndpointAddress, AddressError> {
    let path = match rest.strip_prefix("//") {
        Some(hier) => {
            let end = hier.find('/').unwrap_or(hier.len());
            let (authority, path) = hier.split_at(end);
            if !authority.is_empty() {
                return Err(AddressError::UnixAuthority {
                    authority: authority.to_owned(),
                });
            }
            path
        }
        None => rest,
    };
    if path.is_empty() {
        return Err(AddressError::UnixEmptyPath);
    }
    if !path.starts_with('/') {
        return Err(AddressError::UnixRelativePath);
    }
    let decoded = percent_decode(path)?;
    if let Some(position) = decoded.find(char::is_control) {
        return Err(AddressError::ControlCharacter { position });
    }
    Ok(EndpointAddress::Unix(PathBuf::from(decoded)))
}

fn parse_tcp(rest: &str) -> Result<EndpointAddress, AddressError> {
    let hier = rest
        .strip_prefix("//")
        .ok_or(AddressError::TcpNotHierarchical)?;
    let (authority, path) = hier.split_at(hier.find('/').unwrap_or(hier.len()));
    if !path.is_empty() {
        return Err(AddressError::TcpPath);
    }
    if authority.contains('@') {
        return Err(AddressError::TcpUserInfo);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| AddressError::TcpHostNotIp {
                host: authority.to_owned(),
            })?;
        let port = after
            .strip_prefix(':')
            .ok_or(AddressError::TcpMissingPort)?;
        (host, port)
    } else {
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or(AddressError::TcpMissingPort)?;
        if host.contains(':') {
            // An unbracketed IPv6 literal.
            return Err(AddressError::TcpHostNotIp {
                host: host.to_owned(),
            });
        }
        (host, port)
    };
    let ip: IpAddr = host.parse().map_err(|_| AddressError::TcpHostNotIp {
        host: host.to_owned(),
    })?;
    if port.is_empty() {
        return Err(AddressError::TcpMissingPort);
    }
    let port_num = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| AddressError::TcpInvalidPort {
            port: port.to_owned(),
        })?;
    Ok(EndpointAddress::Tcp(SocketAddr::new(ip, port_num)))
}

fn percent_decode(s: &str) -> Result<String, AddressError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(AddressError::BadPercentEncoding)?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AddressError::BadPercentEncoding)
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddress::Unix(p) => write!(f, "unix://{}", display_path(p)),
            EndpointAddress::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

fn display_path(p: &Path) -> String {
    let mut out = String::new();
    for b in p.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<EndpointAddress, AddressError> {
        s.parse()
    }

    fn unix(p: &str) -> Result<EndpointAddress, AddressError> {
        Ok(EndpointAddress::Unix(p.into()))
    }

    #[test]
    fn ep_6_unix_three_slashes() {
        assert_eq!(
            parse("unix:///run/spire/agent.sock"),
            unix("/run/spire/agent.sock")
        );
    }

    #[test]
    fn ep_6_unix_single_slash_shorthand() {
        assert_eq!(parse("unix:/tmp/agent.sock"), unix("/tmp/agent.sock"));
    }

    #[test]
    fn ep_6_unix_scheme_is_case_insensitive_and_percent_decoded() {
        assert_eq!(parse("UNIX:///tmp/my%20sock"), unix("/tmp/my sock"));
    }

    #[test]
    fn ep_6_unix_with_authority_is_rejected() {
        assert_eq!(
            parse("unix://foo/agent.sock"),
            Err(AddressError::UnixAuthority {
                authority: "foo".into()
            })
        );
        assert_eq!(
            parse("unix://foo"),
            Err(AddressError::UnixAuthority {
                authority: "foo".into()
            })
        );
        assert_eq!(
            parse("unix://user@/x"),
            Err(AddressError::UnixAuthority {
                authority: "user@".into()
            })
        );
    }

    #[test]
    fn ep_6_unix_relative_or_empty_path_is_rejected() {
        assert_eq!(
            parse("unix:agent.sock"),
            Err(AddressError::UnixRelativePath)
        );
        assert_eq!(parse("unix:"), Err(AddressError::UnixEmptyPath));
        assert_eq!(parse("unix://"), Err(AddressError::UnixEmptyPath));
    }

    #[test]
    fn ep_6_query_and_fragment_are_rejected() {
        assert_eq!(parse("unix:///tmp/a?x=1"), Err(AddressError::Query));
        assert_eq!(parse("unix:///tmp/a#frag"), Err(AddressError::Fragment));
        assert_eq!(parse("tcp://127.0.0.1:80?x"), Err(AddressError::Query));
        assert_eq!(parse("tcp://127.0.0.1:80#x"), Err(AddressError::Fragment));
    }

    #[test]
    fn ep_6_bad_percent_encoding_is_rejected() {
        assert_eq!(
            parse("unix:///tmp/a%2"),
            Err(AddressError::BadPercentEncoding)
        );
        assert_eq!(
            parse("unix:///tmp/a%zz"),
            Err(AddressError::BadPercentEncoding)
        );
        assert_eq!(
            parse("unix:///tmp/a%0Ab"),
            Err(AddressError::ControlCharacter { position: 6 })
        );
    }

    #[test]
    fn ep_6_tcp_ipv4_and_ipv6() {
        assert_eq!(
            parse("tcp://127.0.0.1:8000"),
            Ok(EndpointAddress::Tcp("127.0.0.1:8000".parse().unwrap()))
        );
        assert_eq!(
            parse("tcp://[::1]:8000"),
            Ok(EndpointAddress::Tcp("[::1]:8000".parse().unwrap()))
        );
    }

    #[test]
    fn ep_6_tcp_with_path_is_rejected() {
        assert_eq!(
            parse("tcp://127.0.0.1:8000/foo"),
            Err(AddressError::TcpPath)
        );
        assert_eq!(parse("tcp://127.0.0.1:8000/"), Err(AddressError::TcpPath));
    }

    #[test]
    fn ep_6_tcp_host_must_be_an_ip() {
        assert_eq!(
            parse("tcp://localhost:8000"),
            Err(AddressError::TcpHostNotIp {
                host: "localhost".into()
            })
        );
        assert_eq!(
            parse("tcp://::1:8000"),
            Err(AddressError::TcpHostNotIp { host: "::1".into() })
        );
    }

    #[test]
    fn ep_6_tcp_port_is_required_and_valid() {
        assert_eq!(parse("tcp://127.0.0.1"), Err(AddressError::TcpMissingPort));
        assert_eq!(parse("tcp://127.0.0.1:"), Err(AddressError::TcpMissingPort));
        assert_eq!(parse("tcp://[::1]"), Err(AddressError::TcpMissingPort));
        for port in ["0", "65536", "+80", "http"] {
            assert_eq!(
                parse(&format!("tcp://127.0.0.1:{port}")),
                Err(AddressError::TcpInvalidPort { port: port.into() })
            );
        }
    }

    #[test]
    fn ep_6_tcp_opaque_and_userinfo_are_rejected() {
        assert_eq!(
            parse("tcp:127.0.0.1:8000"),
            Err(AddressError::TcpNotHierarchical)
        );
        assert_eq!(
            parse("tcp://u@127.0.0.1:8000"),
            Err(AddressError::TcpUserInfo)
        );
    }

    #[test]
    fn ep_6_other_schemes_and_missing_scheme_are_rejected() {
        assert_eq!(
            parse("npipe:agent"),
            Err(AddressError::UnsupportedScheme {
                scheme: "npipe".into()
            })
        );
        assert_eq!(
            parse("http://127.0.0.1:80"),
            Err(AddressError::UnsupportedScheme {
                scheme: "http".into()
            })
        );
        assert_eq!(parse("/tmp/agent.sock"), Err(AddressError::MissingScheme));
        assert_eq!(parse("1unix:/x"), Err(AddressError::MissingScheme));
        assert_eq!(parse(""), Err(AddressError::Empty));
    }

    #[test]
    fn ep_6_control_characters_are_rejected() {
        assert_eq!(
            parse("unix:///tmp/a\nb"),
            Err(AddressError::ControlCharacter { position: 13 })
        );
        assert_eq!(
            parse("tcp://127.0.0.1:80\0"),
            Err(AddressError::ControlCharacter { position: 18 })
        );
        assert_eq!(
            parse("unix:///tmp/a b"),
            Err(AddressError::ControlCharacter { position: 13 })
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "unix:///tmp/my%20sock",
            "tcp://127.0.0.1:8000",
            "tcp://[::1]:9",
        ] {
            let a = parse(s).unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(parse(&a.to_string()), Ok(a));
        }
    }
}
