//! What the engine knows about one inbound request or connection.
//!
//! A [`Request`] holds facts in the form the matchers read them (M-9): the
//! path is normalised when the request is built, header names are
//! lowercased and repeated headers joined as they are added, and a request
//! that a sidecar would reject (bad method, `%00`, whitespace in a header
//! name) remembers why, so the engine answers 400 without copying anything
//! again.

use std::borrow::Cow;
use std::net::IpAddr;

use spiffe_core::{ConnectionFacts, SpiffeId};

use crate::jwt::PresentedToken;
use crate::path::{self, PathError};

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
///
/// `Debug` shows header names but never header values or tokens.
#[derive(Clone)]
pub struct Request {
    pub(crate) protocol: Protocol,
    pub(crate) peer: Option<SpiffeId>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) remote_ip: Option<IpAddr>,
    pub(crate) destination_ip: Option<IpAddr>,
    pub(crate) port: u16,
    pub(crate) sni: Option<String>,
    /// Static for the standard methods: no allocation per request.
    pub(crate) method: Cow<'static, str>,
    /// Normalised path without query (M-7, M-9).
    pub(crate) path: String,
    /// Lowercased `:authority` / `Host` (M-3), when set explicitly.
    pub(crate) host: Option<String>,
    /// Lowercased names, repeated headers joined by `,` (M-9).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) tokens: Vec<PresentedToken>,
    /// Why a sidecar would answer 400 (M-9), if it would.
    pub(crate) malformed: Option<&'static str>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("protocol", &self.protocol)
            .field("peer", &self.peer)
            .field("source_ip", &self.source_ip)
            .field("remote_ip", &self.remote_ip)
            .field("destination_ip", &self.destination_ip)
            .field("port", &self.port)
            .field("sni", &self.sni)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("host", &self.host)
            .field("header_names", &names)
            .field("tokens", &self.tokens)
            .field("malformed", &self.malformed)
            .finish()
    }
}

pub(crate) fn path_error_text(e: PathError) -> &'static str {
    match e {
        PathError::EncodedNul => "path contains %00",
        PathError::NotAbsolute => "path must start with `/`",
    }
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
            method: Cow::Borrowed(""),
            path: String::new(),
            host: None,
            headers: Vec::new(),
            tokens: Vec::new(),
            malformed: None,
        }
    }

    /// An HTTP request; `path` is the raw request target, query included.
    /// It is normalised here, once (M-9).
    pub fn http(method: impl Into<String>, path: impl AsRef<str>) -> Self {
        let mut r = Request::new(Protocol::Http);
        let method = method.into();
        r.malformed = method_malformed(&method);
        r.method = Cow::Owned(method);
        match path::normalize(path.as_ref()) {
            Ok(p) => r.path = p,
            Err(e) => r.malformed = r.malformed.or(Some(path_error_text(e))),
        }
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

    /// The direct peer address (`source.ip`, `ipBlocks`; also `remote.ip`
    /// and `remoteIpBlocks` unless [`Request::remote_ip`] is set).
    #[must_use]
    pub fn source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    /// The original client address from PROXY protocol or a trusted
    /// `X-Forwarded-For` (`remote.ip`, `remoteIpBlocks`). Without it those
    /// read the direct peer address, as Envoy does.
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
        let mut host = host.into();
        host.make_ascii_lowercase();
        self.host = Some(host);
        self
    }

    /// Adds a request header; repeated names are joined with `,` (M-9).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut name = name.into();
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            self.malformed = self.malformed.or(Some("header name contains whitespace"));
        }
        name.make_ascii_lowercase();
        let value = value.into();
        match self.headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            None => self.headers.push((name, value)),
        }
        self
    }

    /// The facts of the connection the request arrived on: `ports` and
    /// `destination.port` read the local port, `destination.ip` the local
    /// address, `source.ip` / `ipBlocks` the remote address, and
    /// `connection.sni` the SNI, and the peer identity is the facts'
    /// [`ConnectionFacts::peer`], the verifier's proof of an mTLS peer;
    /// without one the request has no peer identity.
    #[must_use]
    pub fn connection(mut self, facts: &ConnectionFacts) -> Self {
        self.port = facts.local_addr().port();
        self.destination_ip = Some(facts.local_addr().ip());
        self.source_ip = Some(facts.remote_addr().ip());
        self.sni = facts.sni().map(str::to_owned);
        self.peer = facts.peer().map(|p| p.spiffe_id().clone());
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

    /// The request as the engine reads it, borrowed.
    pub(crate) fn view(&self) -> View<'_> {
        View {
            protocol: self.protocol,
            peer: self.peer.as_ref(),
            source_ip: self.source_ip,
            remote_ip: self.remote_ip,
            destination_ip: self.destination_ip,
            port: self.port,
            sni: self.sni.as_deref(),
            method: &self.method,
            path: &self.path,
            host: self.host.as_deref(),
            headers: &self.headers,
            tokens: &self.tokens,
            malformed: self.malformed,
            owned: Some(self),
        }
    }
}

/// Why a method makes a request malformed (M-9), if it does.
pub(crate) fn method_malformed(method: &str) -> Option<&'static str> {
    (method.is_empty() || method.bytes().any(|b| b.is_ascii_lowercase()))
        .then_some("method must be upper case")
}

/// What the engine reads of one request: the facts of a [`Request`] in
/// the same form (M-9), borrowed. The HTTP layer builds one straight from
/// the `http::Request` and the connection's facts, so a decision copies
/// only what normalisation changed.
pub(crate) struct View<'a> {
    pub(crate) protocol: Protocol,
    pub(crate) peer: Option<&'a SpiffeId>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) remote_ip: Option<IpAddr>,
    pub(crate) destination_ip: Option<IpAddr>,
    pub(crate) port: u16,
    pub(crate) sni: Option<&'a str>,
    pub(crate) method: &'a str,
    /// Normalised path without query.
    pub(crate) path: &'a str,
    /// The explicit host, lowercased.
    pub(crate) host: Option<&'a str>,
    /// Lowercased names, repeated headers joined by `,`.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) tokens: &'a [PresentedToken],
    pub(crate) malformed: Option<&'static str>,
    /// The request this is a view of, if there is one.
    pub(crate) owned: Option<&'a Request>,
}

impl View<'_> {
    /// The value of header `name` (lowercase), repeated headers joined.
    pub(crate) fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The lowercased host: the explicit one, else the `host` or
    /// `:authority` header.
    pub(crate) fn effective_host(&self) -> Option<Cow<'_, str>> {
        if let Some(h) = self.host {
            return Some(Cow::Borrowed(h));
        }
        let h = self
            .header_value("host")
            .or_else(|| self.header_value(":authority"))?;
        Some(lowercase(h))
    }

    /// The request itself for an external authorizer: the one viewed, or
    /// (on the HTTP layer's path) one built from the view.
    pub(crate) fn request(&self) -> Cow<'_, Request> {
        if let Some(r) = self.owned {
            return Cow::Borrowed(r);
        }
        Cow::Owned(Request {
            protocol: self.protocol,
            peer: self.peer.cloned(),
            source_ip: self.source_ip,
            remote_ip: self.remote_ip,
            destination_ip: self.destination_ip,
            port: self.port,
            sni: self.sni.map(str::to_owned),
            method: Cow::Owned(self.method.to_owned()),
            path: self.path.to_owned(),
            host: self.host.map(str::to_owned),
            headers: self.headers.to_vec(),
            tokens: self.tokens.to_vec(),
            malformed: self.malformed,
        })
    }
}

/// `s` in lower case, borrowed when it already is.
pub(crate) fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}
