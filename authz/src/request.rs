//! What the engine knows about one inbound request or connection.

use std::net::IpAddr;

use spiffe_core::SpiffeId;

use crate::jwt::PresentedToken;

/// The inbound chain the traffic goes through (§0 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP filter chain: every attribute exists.
    Http,
    /// TCP filter chain: only TCP attributes exist (§10).
    Tcp,
}

/// One inbound HTTP request or TCP connection.
///
/// ```
/// use authz::Request;
/// let req = Request::http("GET", "/api/v1/items?page=2")
///     .host("shop.example.com")
///     .header("x-tenant", "blue")
///     .port(8080);
/// # let _ = req;
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) protocol: Protocol,
    pub(crate) peer: Option<SpiffeId>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) remote_ip: Option<IpAddr>,
    pub(crate) destination_ip: Option<IpAddr>,
    pub(crate) port: u16,
    pub(crate) sni: Option<String>,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) host: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) tokens: Vec<PresentedToken>,
}

impl Request {
    fn new(protocol: Protocol) -> Self {
        Request {
            protocol,
            peer: None,
            source_ip: None,
            remote_ip: None,
            destination_ip: None,
            port: 0,
            sni: None,
            method: String::new(),
            path: String::new(),
            host: None,
            headers: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// An HTTP request; `path` is the raw request target, query included.
    pub fn http(method: impl Into<String>, path: impl Into<String>) -> Self {
        let mut r = Request::new(Protocol::Http);
        r.method = method.into();
        r.path = path.into();
        r
    }

    /// A TCP connection.
    pub fn tcp() -> Self {
        Request::new(Protocol::Tcp)
    }

    /// The verified peer identity from Istio mTLS; absent for plaintext.
    #[must_use]
    pub fn peer(mut self, id: SpiffeId) -> Self {
        self.peer = Some(id);
        self
    }

    /// The direct peer address (`source.ip`, `ipBlocks`).
    #[must_use]
    pub fn source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    /// The original client address (`remote.ip`, `remoteIpBlocks`).
    #[must_use]
    pub fn remote_ip(mut self, ip: IpAddr) -> Self {
        self.remote_ip = Some(ip);
        self
    }

    /// The address the connection was sent to (`destination.ip`).
    #[must_use]
    pub fn destination_ip(mut self, ip: IpAddr) -> Self {
        self.destination_ip = Some(ip);
        self
    }

    /// The workload port (`ports`, `destination.port`).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The SNI of the inbound TLS connection (`connection.sni`).
    #[must_use]
    pub fn sni(mut self, sni: impl Into<String>) -> Self {
        self.sni = Some(sni.into());
        self
    }

    /// The `:authority` / `Host` value, port included if sent.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Adds a request header; repeated names are joined with `,` (M-9).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A JWT the request carries, already located and checked.
    #[must_use]
    pub fn token(mut self, token: PresentedToken) -> Self {
        self.tokens.push(token);
        self
    }

    /// The protocol of the request.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
}
