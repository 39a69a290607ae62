//! Tower middleware enforcing decisions on HTTP requests.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{Either, Full};
use spiffe_core::{PeerIdentity, SpiffeId};

use crate::decision::{Decision, Response};
use crate::engine::{Engine, ExtAuthz, ExtAuthzVerdict};
use crate::jwks;
use crate::jwt::{PresentedToken, TokenLocation};
use crate::request::Request;

/// Per-connection facts. The mTLS acceptor (or the application) inserts one
/// into each request's extensions; without it the request counts as
/// plaintext on port 0 with no addresses. A [`spiffe_core::PeerIdentity`]
/// extension, which the mTLS layer inserts after a verified handshake,
/// supplies the peer identity and takes precedence over [`Self::peer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Verified peer SPIFFE ID from Istio-style mTLS.
    pub peer: Option<SpiffeId>,
    /// Direct peer address.
    pub source_ip: Option<IpAddr>,
    /// Original client address (PROXY protocol or trusted XFF).
    pub remote_ip: Option<IpAddr>,
    /// Address the connection was sent to.
    pub destination_ip: Option<IpAddr>,
    /// Workload port the connection arrived on.
    pub port: u16,
    /// SNI of the inbound TLS connection.
    pub sni: Option<String>,
}

impl ConnectionInfo {
    /// Connection facts with a peer identity and port.
    pub fn new(peer: Option<SpiffeId>, port: u16) -> Self {
        ConnectionInfo {
            peer,
            port,
            ..ConnectionInfo::default()
        }
    }

    fn apply(&self, mut req: Request) -> Request {
        req.peer = self.peer.clone();
        req.source_ip = self.source_ip;
        req.remote_ip = self.remote_ip;
        req.destination_ip = self.destination_ip;
        req.port = self.port;
        req.sni = self.sni.clone();
        req
    }
}

/// Proof that the request passed authorization; the inner service finds it
/// in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authorized {
    /// The ALLOW rule that matched, if the decision was not a default allow.
    pub policy: Option<String>,
}

/// Body of responses produced by [`Authz`]: the inner body, or a short
/// text body for a denial.
pub type AuthzBody<B> = Either<B, Full<Bytes>>;

type SharedExt = Arc<dyn ExtAuthz + Send + Sync>;

/// Layer that wraps a service in [`Authz`].
#[derive(Clone)]
pub struct AuthzLayer {
    engine: Arc<Engine>,
    ext: SharedExt,
}

impl std::fmt::Debug for AuthzLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzLayer").finish_non_exhaustive()
    }
}

impl AuthzLayer {
    /// Enforces `engine`; CUSTOM policies fail closed until an external
    /// authorizer is set with [`AuthzLayer::with_ext_authz`].
    pub fn new(engine: Arc<Engine>) -> Self {
        let deny = |_: &str, _: &Request| ExtAuthzVerdict::Deny { status: 403 };
        AuthzLayer {
            engine,
            ext: Arc::new(deny),
        }
    }

    /// Uses `ext` for CUSTOM policies.
    #[must_use]
    pub fn with_ext_authz(mut self, ext: Arc<dyn ExtAuthz + Send + Sync>) -> Self {
        self.ext = ext;
        self
    }
}

impl<S> tower::Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Authz<S> {
        Authz {
            inner,
            engine: Arc::clone(&self.engine),
            ext: Arc::clone(&self.ext),
        }
    }
}

/// Service that decides each request before the inner service sees it:
/// denied requests get `403 RBAC: access denied` (or the 400/401/403 of
/// §0), allowed ones carry [`Authorized`].
#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    engine: Arc<Engine>,
    ext: SharedExt,
}

impl<S> std::fmt::Debug for Authz<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authz").finish_non_exhaustive()
    }
}

fn header_str<B>(req: &http::Request<B>, name: &str) -> Option<String> {
    let values: Vec<String> = req
        .headers()
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// Finds the token at one configured location.
fn find_token<B>(req: &http::Request<B>, loc: &TokenLocation) -> Option<String> {
    match loc {
        TokenLocation::Header { name, prefix } => {
            let value = header_str(req, name)?;
            value.strip_prefix(prefix.as_str()).map(str::to_owned)
        }
        TokenLocation::Param(name) => query_param(req.uri().query()?, name),
        TokenLocation::Cookie(name) => cookie(&header_str(req, "cookie")?, name),
    }
}

fn to_request<B>(req: &http::Request<B>, locations: &[TokenLocation]) -> Request {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let mut out = Request::http(req.method().as_str(), target);
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| header_str(req, "host"));
    if let Some(host) = host {
        out = out.host(host);
    }
    for (name, value) in req.headers() {
        out = out.header(
            name.as_str(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        );
    }
    for loc in locations {
        if let Some(token) = find_token(req, loc) {
            out = out.token(PresentedToken::raw(loc.clone(), token));
        }
    }
    let mut out = match req.extensions().get::<ConnectionInfo>() {
        Some(conn) => conn.apply(out),
        None => out,
    };
    // The TLS layer's proof of the peer wins over a peer named in
    // `ConnectionInfo`: only a verified handshake produces a `PeerIdentity`.
    if let Some(peer) = req.extensions().get::<PeerIdentity>() {
        out.peer = Some(peer.spiffe_id().clone());
    }
    out
}

fn denial<B>(decision: &Decision) -> http::Response<AuthzBody<B>> {
    let status = match decision.response {
        Response::Http(code) => code,
        _ => 403,
    };
    let body = match (status, &decision.reason) {
        (401 | 403, crate::Reason::Jwt(f)) => f.to_string(),
        (400, _) => "Bad Request".to_owned(),
        _ => "RBAC: access denied".to_owned(),
    };
    let mut resp = http::Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::FORBIDDEN);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

/// `outputClaimToHeaders`: a string, number or boolean claim, nested claims
/// named with dots.
fn claim_text(claims: &serde_json::Map<String, serde_json::Value>, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Overwrites `name` with `value`; a missing value removes any incoming header
/// of that name, so clients cannot forge it.
fn set_header<B>(req: &mut http::Request<B>, name: &str, value: Option<String>) {
    let Ok(name) = HeaderName::try_from(name) else {
        return;
    };
    match value.and_then(|v| HeaderValue::try_from(v).ok()) {
        Some(v) => {
            req.headers_mut().insert(name, v);
        }
        None => {
            req.headers_mut().remove(name);
        }
    }
}

/// RA-2: drop tokens unless `forwardOriginalToken`; copy payloads to
/// `outputPayloadToHeader` and claims to `outputClaimToHeaders`.
fn rewrite_token_headers<B>(req: &mut http::Request<B>, engine: &Engine) {
    for h in engine.token_handling().iter() {
        let Some(token) = find_token(req, &h.location) else {
            continue;
        };
        if !h.claim_headers.is_empty()
            && let Ok(claims) = jwks::peek_claims(&token)
        {
            for (header, claim) in &h.claim_headers {
                set_header(req, header, claim_text(&claims, claim));
            }
        }
        if let Some(payload) = token.split('.').nth(1) {
            for name in &h.payload_headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(payload),
                ) {
                    req.headers_mut().insert(n, v);
                }
            }
        }
        if let TokenLocation::Header { name, .. } = &h.location
            && !h.forward
        {
            req.headers_mut().remove(name.as_str());
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`Authz`].
    #[project = ResponseFutureProj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, B> {
        /// The inner service is handling the request.
        Inner { #[pin] future: F },
        /// The request was denied.
        Denied { response: Option<http::Response<AuthzBody<B>>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<AuthzBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { future } => future
                .poll(cx)
                .map(|r| r.map(|resp| resp.map(Either::Left))),
            ResponseFutureProj::Denied { response } => match response.take() {
                Some(resp) => Poll::Ready(Ok(resp)),
                // Polled again after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
        }
    }
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for Authz<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
{
    type Response = http::Response<AuthzBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqB>) -> Self::Future {
        let handling = self.engine.token_handling();
        let locations: Vec<TokenLocation> = handling.iter().map(|h| h.location.clone()).collect();
        let request = to_request(&req, &locations);
        let decision = self
            .engine
            .check_with(&request, self.ext.as_ref(), SystemTime::now());
        if !decision.allowed {
            return ResponseFuture::Denied {
                response: Some(denial(&decision)),
            };
        }
        rewrite_token_headers(&mut req, &self.engine);
        req.extensions_mut().insert(Authorized {
            policy: decision.policy,
        });
        ResponseFuture::Inner {
            future: self.inner.call(req),
        }
    }
}

impl Engine {
    /// Connection-level check for TCP (and STRICT mTLS for any port): call
    /// once per accepted connection; close it unless the decision allows.
    pub fn check_connection(&self, conn: &ConnectionInfo) -> Decision {
        self.check(&conn.apply(Request::tcp()))
    }
}
