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

use crate::authn::TokenHandling;
use crate::decision::{Decision, Response, TokenHeaders};
use crate::engine::{Engine, ExtAuthz, ExtAuthzVerdict};
use crate::jwt::TokenLocation;
use crate::request::Request;
use crate::translate::{Translated, translate};

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

/// Adds the connection facts to the translated request.
fn with_connection<B>(req: &http::Request<B>, out: Request) -> Request {
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

/// RA-2 after an allow: drop tokens found in headers unless
/// `forwardOriginalToken`; strip every configured output header, then write
/// the values the engine derived from verified payloads.
fn rewrite_token_headers<B>(
    req: &mut http::Request<B>,
    handling: &TokenHandling,
    found: &[bool],
    outputs: &TokenHeaders,
) {
    for ((loc, forward), found) in handling.locations.iter().zip(found) {
        if let TokenLocation::Header { name, .. } = loc
            && *found
            && !forward
        {
            req.headers_mut().remove(name.as_str());
        }
    }
    for name in &handling.output_headers {
        req.headers_mut().remove(name.as_str());
    }
    for (name, value) in &outputs.0 {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            req.headers_mut().insert(n, v);
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
        // One snapshot for the whole request: the token handling and the
        // decision come from the same policy set even during a reload.
        let state = self.engine.snapshot();
        let Translated {
            request,
            uri,
            found,
        } = translate(&req, &state.handling);
        let request = with_connection(&req, request);
        let decision =
            self.engine
                .decide_in(&state, &request, self.ext.as_ref(), SystemTime::now());
        if !decision.allowed {
            return ResponseFuture::Denied {
                response: Some(denial(&decision)),
            };
        }
        // M-9: the backend serves the path that was authorized.
        if let Some(uri) = uri {
            *req.uri_mut() = uri;
        }
        rewrite_token_headers(&mut req, &state.handling, &found, &decision.token_headers);
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
