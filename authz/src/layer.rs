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
use spiffe_core::ConnectionFacts;

use crate::authn::TokenHandling;
use crate::decision::{Decision, Response, TokenHeaders};
use crate::engine::{Engine, ExtAuthz, ExtAuthzVerdict};
use crate::jwt::TokenLocation;
use crate::request::Request;
use crate::translate::translate;

/// The original client address, when something the server trusts supplied
/// it: PROXY protocol, or an `X-Forwarded-For` hop the server decided to
/// trust. Whoever parses that inserts one into the request extensions next
/// to the [`ConnectionFacts`]; `remote.ip` and `remoteIpBlocks` then read it
/// instead of the direct peer address. This crate never reads XFF itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalClientAddr(IpAddr);

impl OriginalClientAddr {
    /// The original client's address.
    pub fn new(ip: IpAddr) -> Self {
        OriginalClientAddr(ip)
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.0
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

    /// Enforces `set` for the workload holding `source`'s current SVID,
    /// with its trust domain and namespace ([`Engine::for_identity`]).
    ///
    /// Fails when the source holds no SVID yet: wait for one first
    /// (`workload_api::X509Source::from_env` does).
    pub fn for_source(
        source: &(impl spiffe_core::SvidSource + ?Sized),
        set: &crate::PolicySet,
    ) -> Result<Self, NoIdentity> {
        let svid = source.x509_svid().ok_or(NoIdentity)?;
        Ok(AuthzLayer::new(Arc::new(Engine::for_identity(
            svid.spiffe_id(),
            set,
        ))))
    }

    /// Uses `ext` for CUSTOM policies.
    #[must_use]
    pub fn with_ext_authz(mut self, ext: Arc<dyn ExtAuthz + Send + Sync>) -> Self {
        self.ext = ext;
        self
    }

    /// What [`Authz`] does before its inner service, for a caller that
    /// holds the connection's `facts` itself (a proxy that owns the
    /// connection) and calls its backend directly: nothing is read from
    /// or added to the request's extensions except an
    /// [`OriginalClientAddr`].
    ///
    /// Allowed, `req` is ready for the backend (the authorized, normalised
    /// path; token headers dropped or written as the policies say) and the
    /// [`Authorized`] proof comes back. Denied, the answer to send comes
    /// back instead, exactly as [`Authz`] sends it, with the [`Decision`]
    /// in its extensions.
    pub fn authorize<B>(
        &self,
        req: &mut http::Request<B>,
        facts: &ConnectionFacts,
    ) -> Result<Authorized, Box<http::Response<Full<Bytes>>>> {
        authorize(&self.engine, &self.ext, req, Some(facts))
    }
}

/// [`AuthzLayer::for_source`] was given a source without an SVID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the identity source holds no SVID yet, so the workload's trust domain is unknown: wait for the first SVID before building the authorization layer"
)]
pub struct NoIdentity;

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
/// §0) with the [`Decision`] in the response's extensions, allowed ones
/// carry [`Authorized`] and the normalised path (M-9).
///
/// Every request must carry the [`ConnectionFacts`] of its connection in
/// its extensions (mtls-tower inserts them); a request without them is
/// answered `500` and logged, never decided as if from nowhere. The peer
/// identity is read only from those facts ([`ConnectionFacts::peer`], the
/// [`spiffe_core::PeerIdentity`] the mTLS verifier produced); the original
/// client address, if a trusted proxy supplied one, from an
/// [`OriginalClientAddr`] extension.
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

/// The 500 for a request that carries no [`ConnectionFacts`]: the stack
/// is misassembled, and deciding as if the request came from nowhere would
/// make port and address rules silently stop matching.
fn missing_facts() -> http::Response<Full<Bytes>> {
    tracing::warn!(
        "authz: request without ConnectionFacts refused with 500; \
         the acceptor must insert spiffe_core::ConnectionFacts into every request"
    );
    let mut resp = http::Response::new(Full::new(Bytes::from_static(
        b"Internal Server Error: no connection facts",
    )));
    *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Whether the request is gRPC (`content-type: application/grpc[+proto…]`).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.strip_prefix("application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
        })
}

/// The gRPC status for a denial's HTTP status, as Envoy maps local
/// replies: 401 → UNAUTHENTICATED (16), 403 → PERMISSION_DENIED (7),
/// 400 → INTERNAL (13), anything else → UNKNOWN (2).
fn grpc_status(http: u16) -> &'static str {
    match http {
        401 => "16",
        403 => "7",
        400 => "13",
        _ => "2",
    }
}

/// The response to a denied request: the HTTP status and a text body, or
/// for gRPC a trailers-only reply (HTTP 200, `grpc-status`,
/// `grpc-message`) so gRPC clients see PERMISSION_DENIED or
/// UNAUTHENTICATED with the reason instead of a protocol error.
fn denial(decision: &Decision, grpc: bool) -> http::Response<Full<Bytes>> {
    let status = match decision.response {
        Response::Http(code) => code,
        _ => 403,
    };
    let body = match (status, &decision.reason) {
        (401 | 403, crate::Reason::Jwt(f)) => f.to_string(),
        (400, _) => "Bad Request".to_owned(),
        _ => "RBAC: access denied".to_owned(),
    };
    let mut resp = if grpc {
        let mut resp = http::Response::new(Full::new(Bytes::new()));
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(grpc_status(status)));
        // grpc-message is percent-encoded; the reasons are printable ASCII.
        let message = body.replace('%', "%25");
        if let Ok(v) = HeaderValue::try_from(message) {
            headers.insert("grpc-message", v);
        }
        resp
    } else {
        let mut resp = http::Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::FORBIDDEN);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        resp
    };
    // Who answered and why, for the caller's metrics and access log.
    resp.extensions_mut().insert(decision.clone());
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
        match authorize(&self.engine, &self.ext, &mut req, None) {
            Ok(authorized) => {
                req.extensions_mut().insert(authorized);
                ResponseFuture::Inner {
                    future: self.inner.call(req),
                }
            }
            Err(denied) => ResponseFuture::Denied {
                response: Some((*denied).map(Either::Right)),
            },
        }
    }
}

/// The step [`Authz`] takes before its inner service, shared with
/// [`AuthzLayer::authorize`]: the connection's facts are `facts`, else
/// the request's [`ConnectionFacts`] extension.
fn authorize<B>(
    engine: &Engine,
    ext: &SharedExt,
    req: &mut http::Request<B>,
    facts: Option<&ConnectionFacts>,
) -> Result<Authorized, Box<http::Response<Full<Bytes>>>> {
    let Some(facts) = facts.or_else(|| req.extensions().get::<ConnectionFacts>()) else {
        return Err(Box::new(missing_facts()));
    };
    // One snapshot for the whole request: the token handling and the
    // decision come from the same policy set even during a reload.
    let state = engine.snapshot();
    // Decided on a view borrowed from `req`, which is changed only after.
    let (decision, uri, found) = {
        let translated = translate(req, &state.handling, state.header_names());
        let remote_ip = req
            .extensions()
            .get::<OriginalClientAddr>()
            .map(|client| client.ip());
        let view = translated.view(facts, remote_ip);
        let decision = engine.decide_in(&state, &view, ext.as_ref(), SystemTime::now());
        (decision, translated.uri, translated.found)
    };
    if !decision.allowed {
        return Err(Box::new(denial(&decision, is_grpc(req.headers()))));
    }
    // M-9: the backend serves the path that was authorized.
    if let Some(uri) = uri {
        *req.uri_mut() = uri;
    }
    rewrite_token_headers(req, &state.handling, &found, &decision.token_headers);
    Ok(Authorized {
        policy: decision.policy,
    })
}

impl Engine {
    /// Connection-level check for TCP (and STRICT mTLS for any port): call
    /// once per accepted connection with its facts (which hold, after a
    /// verified mTLS handshake, the verifier's peer identity); close the
    /// connection unless the decision allows. For PROXY protocol, build
    /// `Request::tcp().connection(..).remote_ip(..)` and use
    /// [`Engine::check`].
    pub fn check_connection(&self, facts: &ConnectionFacts) -> Decision {
        self.check(&Request::tcp().connection(facts))
    }
}
