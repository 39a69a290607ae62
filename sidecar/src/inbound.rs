//! The inbound side: terminate mTLS, decide, forward to the local
//! application.
//!
//! Per connection: find the destination port (the original destination
//! under transparent interception, else the configured application's),
//! read the effective PeerAuthentication mode for it, look at the first
//! bytes (TLS or not), complete the mTLS handshake with a deadline, then
//! detect HTTP/2, HTTP/1.x or opaque TCP (unless the port declares its
//! protocol). HTTP requests go through the authz layer one by one; a TCP
//! connection is decided once and re-checked on every policy update.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use authz::{AuthzLayer, MtlsMode, Request as AuthzRequest};
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use spiffe_core::{ConnectionFacts, SpiffeId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::body::{BodyStats, Counted, ProxyBody, boxed, text};
use crate::config::AppProtocol;
use crate::detect::{Detected, Prefixed, detect};
use crate::final_write::{FinalResponse, FinalWrite, MarksFinal, closes_connection};
use crate::h2body::{RecvBody, SendBody};
use crate::memo::KeptFor;
use crate::runtime::{BoxingExecutor, Shared};
use crate::telemetry::{
    AccessDecision, AccessLogEntry, Direction, EntryKind, LabelMemo, Reporter, RequestLabels,
    RequestOutcome, RequestProtocol, SecurityPolicy,
};

static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Where an inbound connection goes: the application address, the port
/// policies see, and its declared protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppTarget {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: AppProtocol,
}

impl Shared {
    fn app_target(&self, tcp: &TcpStream) -> AppTarget {
        let inbound = &self.config.inbound;
        if inbound.transparent
            && let Ok(dst) = crate::intercept::original_dst(tcp)
            && Some(dst) != tcp.local_addr().ok()
        {
            let protocol = inbound.ports.get(&dst.port()).copied().unwrap_or_default();
            return AppTarget {
                addr: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), dst.port()),
                protocol,
            };
        }
        AppTarget {
            addr: inbound.app,
            protocol: inbound.protocol,
        }
    }
}

/// Serves one accepted inbound connection to its end.
///
/// `handshake_permit` bounds concurrent handshakes: it is released once
/// the connection is past detection and TLS.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut tcp: TcpStream,
    remote: SocketAddr,
    handshake_permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let _ = tcp.set_nodelay(true);
    let Ok(local) = tcp.local_addr() else { return };
    let app = shared.app_target(&tcp);
    // Policies see the workload's port, as under Istio's interception.
    let local = SocketAddr::new(local.ip(), app.addr.port());
    let mode = shared.policies.engine().mtls_mode(app.addr.port());
    let limits = &shared.config.limits;

    let (first, sniffed) = match detect(&mut tcp, limits.detect_timeout).await {
        Ok(d) => d,
        Err(_) => return,
    };
    let final_response = FinalResponse::new();
    let io = Prefixed::new(sniffed, FinalWrite::new(tcp, final_response.clone()));
    let tls = first == Detected::Tls && mode != MtlsMode::Disable;
    if !tls {
        if mode == MtlsMode::Strict {
            shared.refuse_plaintext(remote, local);
            return;
        }
        let facts = ConnectionFacts::new(local, remote);
        drop(handshake_permit);
        after_transport(shared, io, facts, app, None, final_response).await;
        return;
    }

    let acceptor = tokio_rustls::TlsAcceptor::from(shared.server_tls.rustls().clone());
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io)).await;
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.handshake_failed(&e);
            return;
        }
        Err(_) => {
            shared
                .metrics
                .tls_handshake_failed(Direction::Inbound, "handshake_timeout");
            return;
        }
    };
    drop(handshake_permit);
    let conn = stream.get_ref().1;
    let Some(peer) = shared.server_tls.peer_identity(conn) else {
        shared
            .metrics
            .tls_handshake_failed(Direction::Inbound, "no_client_certificate");
        return;
    };
    let mut facts = ConnectionFacts::new(local, remote)
        .with_tls()
        .with_peer(peer);
    if let Some(sni) = conn.server_name() {
        facts = facts.with_sni(sni);
    }
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    if let Some(alpn) = &alpn {
        facts = facts.with_alpn(alpn.clone());
    }
    let hint = (alpn.as_deref() == Some(b"h2")).then_some(Detected::Http2);
    after_transport(shared, stream, facts, app, hint, final_response).await;
}

/// Protocol detection (or the port's declaration), then HTTP or TCP.
/// `final_response` is the hint of the connection's [`FinalWrite`].
async fn after_transport<S>(
    shared: Arc<Shared>,
    mut io: S,
    facts: ConnectionFacts,
    app: AppTarget,
    hint: Option<Detected>,
    final_response: Arc<FinalResponse>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let declared = match app.protocol {
        AppProtocol::Tcp => Some(Detected::Tcp),
        AppProtocol::Http2 | AppProtocol::Grpc => Some(Detected::Http2),
        AppProtocol::Http | AppProtocol::Auto => None,
    };
    let (proto, sniffed) = match declared.or(hint) {
        Some(p) => (p, bytes::Bytes::new()),
        None => match detect(&mut io, shared.config.limits.detect_timeout).await {
            Ok(d) => d,
            Err(_) => return,
        },
    };
    let io = Prefixed::new(sniffed, io);
    match proto {
        // HTTP/2 that ALPN agreed or the preface showed: driven directly.
        // A port declared HTTP/2 may still be spoken to in HTTP/1.1, so
        // without either sign hyper's server tells the two apart.
        Detected::Http2 if declared.is_none() => serve_h2(shared, io, facts, app).await,
        Detected::Http1 | Detected::Http2 => {
            serve_http(shared, io, facts, app, final_response).await
        }
        Detected::Tcp | Detected::Tls => serve_tcp(shared, io, facts, app).await,
    }
}

/// What every request of one inbound HTTP connection shares: the
/// policies' decision step, the application, the connection's facts and
/// its memos.
struct Requests {
    authz: AuthzLayer,
    shared: Arc<Shared>,
    facts: ConnectionFacts,
    labels: LabelMemo<Option<SpiffeId>>,
    app: AppTarget,
    /// `app.addr` as a URI authority, parsed once per connection.
    authority: Authority,
    xfcc: XfccMemo,
}

impl Requests {
    fn new(shared: Arc<Shared>, facts: ConnectionFacts, app: AppTarget) -> Option<Self> {
        // A socket address always renders as a valid authority.
        let authority = app.addr.to_string().parse::<Authority>().ok()?;
        Some(Requests {
            authz: AuthzLayer::new(shared.policies.engine().clone()),
            shared,
            facts,
            labels: LabelMemo::new(),
            app,
            authority,
            xfcc: XfccMemo::default(),
        })
    }

    /// One request through authz to the application; its metrics and
    /// access-log line are recorded when the response body ends.
    async fn respond<B>(&self, req: http::Request<B>) -> http::Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let request_bytes = Arc::new(AtomicU64::new(0));
        let (parts, body) = req.into_parts();
        let info = RequestInfo::of(&parts, self.shared.access_log.is_enabled());
        let mut req =
            http::Request::from_parts(parts, boxed(Counted::new(body, request_bytes.clone())));
        // Decided and forwarded here, with the connection's facts at hand:
        // nothing rides in the request's or the response's extensions.
        let (resp, authorized) = match self.authz.authorize(&mut req, &self.facts) {
            Ok(authorized) => {
                // Pinned where it is made: an awaited future moved into
                // place would be copied whole.
                let forward = std::pin::pin!(forward(self, req));
                (forward.await, Some(authorized))
            }
            Err(denied) => ((*denied).map(boxed), None),
        };
        self.shared
            .record_inbound(self, info, started, request_bytes, resp, authorized)
    }
}

/// Serves HTTP/1.x (and HTTP/2 a declared port receives) with hyper.
async fn serve_http<S>(
    shared: Arc<Shared>,
    io: S,
    facts: ConnectionFacts,
    app: AppTarget,
    final_response: Arc<FinalResponse>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(requests) = Requests::new(shared.clone(), facts, app) else {
        return;
    };
    let requests = Arc::new(requests);
    let hyper_service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let requests = requests.clone();
        let final_response = final_response.clone();
        async move {
            let last = closes_connection(req.version(), req.headers());
            let resp = requests.respond(req).await;
            // The connection ends after this response: its tail leaves
            // with the FIN.
            let resp = if last {
                resp.map(|b| boxed(MarksFinal::new(b, final_response)))
            } else {
                resp
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let builder = server_builder(&shared.config.limits);
    let conn = builder.serve_connection(TokioIo::new(io), hyper_service);
    let mut drain = shared.drain.subscribe();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = drain.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Serves an HTTP/2 connection with the `h2` crate directly: each
/// stream's request runs in a task of its own, from the request through
/// authz and the application to the end of the response body, which is
/// sent within the window the peer grants. Settings as hyper's server
/// has them: 1 MiB windows, 200 concurrent streams, 400 KiB of buffered
/// response per stream, the head limit of `limits.max_header_bytes`.
async fn serve_h2<S>(shared: Arc<Shared>, io: S, facts: ConnectionFacts, app: AppTarget)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(requests) = Requests::new(shared.clone(), facts, app) else {
        return;
    };
    let limits = &shared.config.limits;
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .max_concurrent_streams(200)
        .max_send_buffer_size(400 << 10)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_local_error_reset_streams(Some(1024));
    // The client's preface and SETTINGS are due as a request head is.
    let handshake = builder.handshake::<_, bytes::Bytes>(io);
    let mut conn = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "inbound HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let requests = Arc::new(requests);
    let mut drain = shared.drain.subscribe();
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            accepted = conn.accept() => match accepted {
                // Each stream a task of its own (boxed: the future is
                // large, and tokio moves it whole when it starts), so that
                // its wake-ups do not poll the connection or the others.
                Some(Ok((req, respond))) => {
                    tokio::spawn(Box::pin(h2_stream(requests.clone(), req, respond)));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "inbound HTTP/2 connection failed");
                    break;
                }
                // Closed, and after a graceful shutdown every stream done.
                None => break,
            },
            _ = drain.changed(), if !draining => {
                // GOAWAY: streams already open finish, new ones are refused.
                draining = true;
                conn.graceful_shutdown();
            }
        }
    }
}

/// One HTTP/2 stream of [`serve_h2`]: the request through [`Requests`],
/// then the response on the stream. A peer that resets the stream before
/// the response is ready cancels the request (the application's call is
/// dropped with it).
async fn h2_stream(
    requests: Arc<Requests>,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
) {
    let (parts, recv) = req.into_parts();
    let body = RecvBody::new(recv, &parts.headers);
    let response = requests.respond(http::Request::from_parts(parts, body));
    let mut response = std::pin::pin!(response);
    let resp = std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(resp) = response.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(resp));
        }
        if respond.poll_reset(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        std::task::Poll::Pending
    })
    .await;
    let Some(resp) = resp else { return };
    let (mut head, body) = resp.into_parts();
    // The application's response has lost its hop-by-hop fields in
    // `forward`; `TE: trailers`, kept there, has no place in an HTTP/2
    // response (RFC 9113 §8.2.2).
    let [te, date, length] = present_of(
        &head.headers,
        [
            &http::header::TE,
            &http::header::DATE,
            &http::header::CONTENT_LENGTH,
        ],
    );
    if te {
        head.headers.remove(http::header::TE);
    }
    // This sidecar's own answers (a denial, an unreachable application)
    // carry the date an origin server gives (RFC 9110 §6.6.1).
    if !date {
        head.headers.insert(http::header::DATE, http_date());
    }
    let end = http_body::Body::is_end_stream(&body);
    if !end
        && !length
        && let Some(len) = http_body::Body::size_hint(&body).exact()
    {
        head.headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    match respond.send_response(http::Response::from_parts(head, ()), end) {
        Ok(stream) if !end => SendBody::new(body, stream, None).await,
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "inbound HTTP/2 response not sent"),
    }
}

/// The HTTP server settings both listeners use: the limits that bound a
/// slow or oversized request head.
pub(crate) fn server_builder(
    limits: &crate::config::Limits,
) -> hyper_util::server::conn::auto::Builder<BoxingExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(BoxingExecutor);
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// What the access log and metrics need from a request head: the head's
/// own reference-counted parts, kept only where an access log will write
/// them and rendered as text only then (most requests are counted, not
/// logged).
#[derive(Debug, Clone)]
pub(crate) struct RequestInfo {
    logged: Option<LoggedHead>,
    /// The `Host` header, not the target's authority, named the request's
    /// service (an HTTP/2 client dialling the outbound listener itself).
    authority_from_host: bool,
    pub(crate) grpc: bool,
}

/// The parts of a request head an access-log line shows.
#[derive(Debug, Clone)]
struct LoggedHead {
    method: http::Method,
    uri: http::Uri,
    host: Option<HeaderValue>,
}

impl RequestInfo {
    /// What `parts` tell; the method, target and `Host` only when `logged`
    /// (an access log is written), else they render empty.
    pub(crate) fn of(parts: &http::request::Parts, logged: bool) -> Self {
        RequestInfo {
            logged: logged.then(|| LoggedHead {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                host: parts.headers.get(http::header::HOST).cloned(),
            }),
            authority_from_host: false,
            grpc: is_grpc(&parts.headers),
        }
    }

    /// The `grpc-status` of a response head to this request: looked up
    /// for gRPC requests only, the only ones it is reported for.
    pub(crate) fn grpc_status_in(&self, headers: &http::HeaderMap) -> Option<u32> {
        self.grpc
            .then(|| crate::body::grpc_status(headers))
            .flatten()
    }

    /// Reports the `Host` header as the request's authority.
    pub(crate) fn authority_from_host(&mut self) {
        self.authority_from_host = true;
    }

    pub(crate) fn method(&self) -> String {
        self.logged
            .as_ref()
            .map(|h| h.method.as_str().to_owned())
            .unwrap_or_default()
    }

    pub(crate) fn path(&self) -> String {
        self.logged
            .as_ref()
            .map(|h| h.uri.path().to_owned())
            .unwrap_or_default()
    }

    /// The target's authority, else the `Host` header (empty when neither
    /// is there, or the header is not text).
    pub(crate) fn authority(&self) -> String {
        let Some(head) = &self.logged else {
            return String::new();
        };
        let host = || head.host.as_ref().and_then(|h| h.to_str().ok());
        let authority = if self.authority_from_host {
            host()
        } else {
            head.uri.authority().map(Authority::as_str).or_else(host)
        };
        authority.unwrap_or_default().to_owned()
    }
}

pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The current time as an HTTP `Date` value, formatted once per second
/// per thread.
fn http_date() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut kept = cell.borrow_mut();
        if kept.0 != second {
            let text = httpdate::fmt_http_date(now);
            // The format is ASCII letters, digits, spaces, commas, colons.
            kept.1 = HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(""));
            kept.0 = second;
        }
        kept.1.clone()
    })
}

/// The names `strip_hop_by_hop` acts on.
static HOP_BY_HOP: [&HeaderName; 7] = [
    &http::header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &http::header::PROXY_AUTHORIZATION,
    &http::header::TRANSFER_ENCODING,
    &http::header::UPGRADE,
    &http::header::TE,
];

/// Which of `names` `headers` holds, in their order. One pass over the
/// names a message carries, where well-known names compare as tags,
/// instead of a hashed lookup per name asked about: most messages carry
/// a handful of fields and few or none of those asked about.
pub(crate) fn present_of<const N: usize>(
    headers: &http::HeaderMap,
    names: [&HeaderName; N],
) -> [bool; N] {
    let mut present = [false; N];
    for name in headers.keys() {
        if let Some(i) = names.iter().position(|h| *h == name) {
            present[i] = true;
        }
    }
    present
}

/// Headers that describe one hop and never travel further.
pub(crate) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Only the names found present are removed. Most messages carry none,
    // and a response usually only `Connection`.
    let present = present_of(headers, HOP_BY_HOP);
    if !present.contains(&true) {
        return;
    }
    // `Connection: keep-alive`, what most HTTP/1.1 servers send, names
    // only a header removed below anyway: nothing to parse.
    let only_keep_alive = || {
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .all(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"))
    };
    if present[0] && !only_keep_alive() {
        // Names `Connection` lists go too; six of the seven are removed
        // below anyway, without parsing them.
        let named: Vec<HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| {
                !HOP_BY_HOP[..6]
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(n))
            })
            .filter_map(|n| HeaderName::try_from(n).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // TE is the last of them and kept when it only asks for trailers.
    for (name, here) in HOP_BY_HOP[..6].iter().zip(present) {
        if here {
            headers.remove(*name);
        }
    }
    if present[6]
        && headers
            .get(http::header::TE)
            .is_some_and(|v| v.as_bytes() != b"trailers")
    {
        headers.remove(http::header::TE);
    }
}

/// The `x-forwarded-client-cert` value of one connection's requests (its
/// peer does not change), kept for the SVID it names as `By`: the `Arc`
/// is held, so a rotated SVID is a different one.
struct XfccMemo(KeptFor<Arc<spiffe_core::X509Svid>, Option<HeaderValue>>);

impl Default for XfccMemo {
    fn default() -> Self {
        XfccMemo(KeptFor::new())
    }
}

impl XfccMemo {
    fn value(
        &self,
        local: Option<Arc<spiffe_core::X509Svid>>,
        peer: &spiffe_core::SpiffeId,
    ) -> Option<HeaderValue> {
        let build = |by: &str| HeaderValue::try_from(format!("By={by};URI={peer}")).ok();
        let Some(local) = local else {
            return build("");
        };
        self.0.get(
            |kept| Arc::ptr_eq(kept, &local),
            || local.clone(),
            || build(local.spiffe_id().as_str()),
        )
    }
}

/// Sends an authorized request of `conn` to the local application.
async fn forward(conn: &Requests, mut req: http::Request<ProxyBody>) -> http::Response<ProxyBody> {
    let (shared, app) = (&conn.shared, conn.app);
    let xfcc = conn.facts.peer().and_then(|peer| {
        let local = shared.identity.svid.x509_svid();
        conn.xfcc.value(local, peer.spiffe_id())
    });
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let [xfcc_sent, host] = present_of(headers, [&XFCC, &http::header::HOST]);
    // Only this sidecar vouches for the client: whatever arrived is
    // replaced, or dropped when there is no peer to name.
    match xfcc {
        Some(v) => {
            headers.insert(XFCC.clone(), v);
        }
        None if xfcc_sent => {
            headers.remove(&XFCC);
        }
        None => {}
    }
    // HTTP/1.1 needs a Host: an HTTP/2 request's authority, else (an
    // HTTP/1.0 request without one) the application's address.
    if !host {
        let host = req.uri().authority().unwrap_or(&conn.authority);
        if let Ok(v) = HeaderValue::try_from(host.as_str()) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    let h2 = match app.protocol {
        AppProtocol::Http2 | AppProtocol::Grpc => true,
        AppProtocol::Http => false,
        AppProtocol::Auto | AppProtocol::Tcp => {
            req.version() == http::Version::HTTP_2 && is_grpc(req.headers())
        }
    };
    let result = if h2 {
        match absolute_uri(std::mem::take(req.uri_mut()), conn.authority.clone()) {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return status(400, "bad request target"),
        }
        *req.version_mut() = http::Version::HTTP_2;
        shared
            .app_h2
            .request(req)
            .await
            .map(|r| r.map(boxed))
            .map_err(|e| e.to_string())
    } else {
        // HTTP/1.1 over a direct connection: the origin-form target.
        match origin_form(std::mem::take(req.uri_mut())) {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return status(400, "bad request target"),
        }
        *req.version_mut() = http::Version::HTTP_11;
        std::pin::pin!(shared.app.send(app.addr, req))
            .await
            .map(|r| r.map(boxed))
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            resp
        }
        Err(e) => {
            tracing::debug!(error = %e, app = %app.addr, "application unreachable");
            status(503, "upstream connect error")
        }
    }
}

/// `uri`'s path and query (`/` if it has none) under `http://authority`,
/// without rendering and parsing it again.
pub(crate) fn absolute_uri(
    uri: http::Uri,
    authority: Authority,
) -> Result<http::Uri, http::uri::InvalidUriParts> {
    retarget(uri, Some(authority))
}

/// `uri`'s path and query alone (`/` if it has none): the request target
/// of a request sent straight to its server.
pub(crate) fn origin_form(uri: http::Uri) -> Result<http::Uri, http::uri::InvalidUriParts> {
    retarget(uri, None)
}

/// `uri`'s path and query (`/` if none) under `http://authority`, or alone.
fn retarget(
    uri: http::Uri,
    authority: Option<Authority>,
) -> Result<http::Uri, http::uri::InvalidUriParts> {
    let mut parts = uri.into_parts();
    parts.scheme = authority.as_ref().map(|_| http::uri::Scheme::HTTP);
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    http::Uri::from_parts(parts)
}

pub(crate) fn status(code: u16, msg: &'static str) -> http::Response<ProxyBody> {
    let mut resp = http::Response::new(text(msg));
    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

impl Shared {
    fn refuse_plaintext(&self, remote: SocketAddr, local: SocketAddr) {
        self.metrics
            .tls_handshake_failed(Direction::Inbound, "plaintext_under_strict");
        self.metrics.authz_denied(
            Reporter::Destination,
            None,
            reason_label(&authz::Reason::StrictMtlsPlaintext),
        );
        let mut entry = AccessLogEntry::new(
            EntryKind::Tcp,
            Reporter::Destination,
            AccessDecision::Deny,
            remote,
            local,
        );
        entry.reason = Some(authz::Reason::StrictMtlsPlaintext.to_string());
        self.access_log.log(&entry);
    }

    fn handshake_failed(&self, e: &std::io::Error) {
        let reason = match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(_)) => "invalid_certificate",
            Some(rustls::Error::NoCertificatesPresented) => "no_client_certificate",
            Some(rustls::Error::AlertReceived(_)) => "alert_received",
            Some(rustls::Error::InvalidMessage(_)) => "invalid_message",
            Some(rustls::Error::PeerIncompatible(_)) => "peer_incompatible",
            Some(_) => "tls_error",
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => "peer_closed",
            None => "io_error",
        };
        self.metrics
            .tls_handshake_failed(Direction::Inbound, reason);
    }

    /// Metrics and the access-log line for one inbound request, recorded
    /// when its response body ends.
    fn record_inbound<B>(
        self: &Arc<Self>,
        conn: &Requests,
        info: RequestInfo,
        started: Instant,
        request_bytes: Arc<AtomicU64>,
        resp: http::Response<B>,
        authorized: Option<authz::Authorized>,
    ) -> http::Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let code = resp.status().as_u16();
        // Denied: the policies' answer, its decision in its extensions.
        let (decision, policy, reason) = if let Some(a) = authorized {
            (AccessDecision::Allow, a.policy, None)
        } else if let Some(d) = resp.extensions().get::<authz::Decision>() {
            self.metrics.authz_denied(
                Reporter::Destination,
                d.policy.as_deref(),
                reason_label(&d.reason),
            );
            (
                AccessDecision::Deny,
                d.policy.clone(),
                Some(d.reason.to_string()),
            )
        } else {
            (AccessDecision::Deny, None, None)
        };
        let local = self.local_spiffe_id();
        let facts = &conn.facts;
        let series_memo = conn.labels.series();
        let labels = conn.labels.get(
            |built_for| *built_for == local,
            || local.clone(),
            || self.labels_inbound(facts),
        );
        let record = HttpRecord {
            series: series_memo,
            labels,
            protocol: request_protocol(info.grpc),
            header_grpc: info.grpc_status_in(resp.headers()),
            info,
            started,
            request_bytes,
            code,
            decision,
            policy,
            reason,
            source: facts.remote_addr(),
            destination: facts.local_addr(),
            upstream: None,
        };
        let shared = self.clone();
        let (parts, body) = resp.into_parts();
        let body = Counted::on_done(body, move |stats: BodyStats| {
            shared.finish_http(record, stats)
        });
        http::Response::from_parts(parts, boxed(body))
    }

    /// The labels of traffic this sidecar receives (`request_protocol`
    /// http).
    fn labels_inbound(&self, facts: &ConnectionFacts) -> RequestLabels {
        let mut labels = RequestLabels {
            reporter: Reporter::Destination,
            ..RequestLabels::default()
        };
        labels.source_principal = facts.peer().map(|p| p.spiffe_id().clone());
        if let Some(peer) = facts.peer() {
            let (ns, sa) = namespace_and_account(peer.spiffe_id().path());
            labels.source_workload_namespace = ns;
            labels.source_workload = sa;
        }
        labels.destination_principal = self.local_spiffe_id();
        let workload = &self.config.workload;
        labels.destination_workload = workload.name.clone();
        labels.destination_workload_namespace = workload.namespace.clone();
        labels.destination_service_name = workload.service.clone();
        labels.destination_service_namespace = workload.namespace.clone();
        labels.destination_service = format!("{}.{}", workload.service, workload.namespace);
        labels.connection_security_policy = if facts.is_tls() {
            SecurityPolicy::MutualTls
        } else {
            SecurityPolicy::None
        };
        labels
    }
}

/// What one HTTP request's metrics and access-log line are made of,
/// completed by the response body's end.
pub(crate) struct HttpRecord {
    /// The connection's labels; the request's outcome is added at the end.
    pub(crate) labels: Arc<RequestLabels>,
    /// Where the connection keeps the series its labels resolved to.
    pub(crate) series: Arc<crate::telemetry::SeriesMemo>,
    pub(crate) protocol: RequestProtocol,
    pub(crate) info: RequestInfo,
    pub(crate) started: Instant,
    pub(crate) request_bytes: Arc<AtomicU64>,
    pub(crate) code: u16,
    pub(crate) header_grpc: Option<u32>,
    pub(crate) decision: AccessDecision,
    pub(crate) policy: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) upstream: Option<SocketAddr>,
}

impl Shared {
    /// Records one finished HTTP request: Istio's request metrics and one
    /// access-log line.
    pub(crate) fn finish_http(&self, record: HttpRecord, stats: BodyStats) {
        let HttpRecord {
            labels,
            series,
            protocol,
            info,
            started,
            request_bytes,
            code,
            header_grpc,
            decision,
            policy,
            reason,
            source,
            destination,
            upstream,
        } = record;
        let grpc_status = match info.grpc {
            true => stats
                .grpc_status
                .or(header_grpc)
                .map(|g| g.to_string())
                .unwrap_or_default(),
            false => String::new(),
        };
        let outcome = RequestOutcome {
            protocol,
            response_code: code,
            grpc_response_status: &grpc_status,
        };
        let elapsed = started.elapsed();
        let req_bytes = request_bytes.load(Ordering::Relaxed);
        self.metrics
            .request_memo(&series, &labels, outcome, elapsed, req_bytes, stats.bytes);
        if !self.access_log.is_enabled() {
            return;
        }
        let mut entry = AccessLogEntry::new(
            EntryKind::Http,
            labels.reporter,
            decision,
            source,
            destination,
        );
        entry.source_principal = labels.source_principal.clone();
        entry.destination_principal = labels.destination_principal.clone();
        entry.method = Some(info.method());
        entry.path = Some(info.path());
        entry.authority = Some(info.authority());
        entry.protocol = Some(protocol.as_str().to_owned());
        entry.status = Some(code);
        entry.request_bytes = req_bytes;
        entry.response_bytes = stats.bytes;
        entry.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        entry.upstream = upstream;
        entry.policy = policy;
        entry.reason = reason;
        self.access_log.log(&entry);
    }
}

/// Istio's `request_protocol` of an HTTP request.
pub(crate) fn request_protocol(grpc: bool) -> RequestProtocol {
    if grpc {
        RequestProtocol::Grpc
    } else {
        RequestProtocol::Http
    }
}

/// A bounded label value for an authorization denial's reason.
pub(crate) fn reason_label(reason: &authz::Reason) -> &'static str {
    use authz::Reason;
    match reason {
        Reason::DenyMatched => "deny_matched",
        Reason::NoAllowMatched => "no_allow_matched",
        Reason::ExtAuthzDenied { .. } => "ext_authz_denied",
        Reason::StrictMtlsPlaintext => "strict_mtls_plaintext",
        Reason::Jwt(_) => "jwt",
        Reason::BadRequest(_) => "bad_request",
        _ => "other",
    }
}

/// `(namespace, service account)` from an Istio-shaped SPIFFE ID path
/// (`/ns/NS/sa/SA`); `unknown` for other shapes.
pub(crate) fn namespace_and_account(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa)) => (ns.to_owned(), sa.to_owned()),
        _ => ("unknown".to_owned(), "unknown".to_owned()),
    }
}

/// Opaque TCP: decided once, re-checked on every policy update, copied
/// both ways with an idle timeout.
async fn serve_tcp<S>(shared: Arc<Shared>, io: S, facts: ConnectionFacts, app: AppTarget)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let engine = shared.policies.engine().clone();
    let request = AuthzRequest::tcp().connection(&facts);
    let decision = engine.check(&request);
    let mut labels = shared.labels_inbound(&facts);
    labels.request_protocol = RequestProtocol::Tcp;
    let verdict = if decision.allowed {
        AccessDecision::Allow
    } else {
        AccessDecision::Deny
    };
    let mut entry = AccessLogEntry::new(
        EntryKind::Tcp,
        Reporter::Destination,
        verdict,
        facts.remote_addr(),
        facts.local_addr(),
    );
    entry.source_principal = labels.source_principal.clone();
    entry.destination_principal = labels.destination_principal.clone();
    entry.upstream = Some(app.addr);
    entry.policy = decision.policy.clone();
    if !decision.allowed {
        shared.metrics.authz_denied(
            Reporter::Destination,
            decision.policy.as_deref(),
            reason_label(&decision.reason),
        );
        entry.reason = Some(decision.reason.to_string());
        shared.access_log.log(&entry);
        return;
    }
    let upstream = match tokio::time::timeout(
        shared.config.limits.handshake_timeout,
        TcpStream::connect(app.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => {
            entry.response_flags = "UF".to_owned();
            entry.reason = Some("application unreachable".to_owned());
            shared.access_log.log(&entry);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    shared.metrics.tcp_opened(&labels);
    let started = Instant::now();
    let outcome = crate::tcp::splice(
        io,
        upstream,
        shared.config.limits.tcp_idle_timeout,
        shared.policies.subscribe(),
        || engine.check(&request).allowed,
        shared.drain_hard.subscribe(),
        crate::tcp::Progress {
            every: shared.config.limits.tcp_report_interval,
            report: |up, down| shared.metrics.tcp_bytes(&labels, up, down),
        },
    )
    .await;
    shared.metrics.tcp_closed(
        &labels,
        outcome.to_upstream - outcome.reported_to_upstream,
        outcome.to_downstream - outcome.reported_to_downstream,
    );
    entry.request_bytes = outcome.to_upstream;
    entry.response_bytes = outcome.to_downstream;
    entry.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    entry.reason = outcome.closed_by.map(str::to_owned);
    shared.access_log.log(&entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    /// The names `strip_hop_by_hop` leaves of `pairs`, in order.
    fn left_after_stripping(pairs: &[(&'static str, &'static str)]) -> Vec<String> {
        let mut h = headers(pairs);
        strip_hop_by_hop(&mut h);
        h.keys().map(|n| n.as_str().to_owned()).collect()
    }

    fn info(target: &str, host: Option<&'static [u8]>) -> RequestInfo {
        let mut req = http::Request::builder().method("PATCH").uri(target);
        if let Some(h) = host {
            req = req.header(http::header::HOST, HeaderValue::from_bytes(h).unwrap());
        }
        RequestInfo::of(&req.body(()).unwrap().into_parts().0, true)
    }

    #[test]
    fn request_info_renders_method_path_and_the_authority_that_named_the_request() {
        // The target's authority comes first, the Host header otherwise.
        let absolute = info("http://a.example:81/x/y?q=1", Some(b"h.example"));
        assert_eq!(absolute.method(), "PATCH");
        assert_eq!(absolute.path(), "/x/y");
        assert_eq!(absolute.authority(), "a.example:81");
        assert_eq!(info("/x", Some(b"h.example")).authority(), "h.example");
        // Routed by its Host header, the request reports that.
        let mut by_host = absolute.clone();
        by_host.authority_from_host();
        assert_eq!(by_host.authority(), "h.example");
        // Neither, or a Host header that is not text: empty, not a panic.
        assert_eq!(info("/x", None).authority(), "");
        assert_eq!(info("/x", Some(b"h\xff")).authority(), "");
        let mut no_host = info("http://a.example/", None);
        no_host.authority_from_host();
        assert_eq!(no_host.authority(), "");
        // Kept only for an access log: without one, nothing is cloned.
        let parts = http::Request::get("http://a.example/x")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let counted = RequestInfo::of(&parts, false);
        assert_eq!(
            (counted.method(), counted.path(), counted.authority()),
            Default::default()
        );
        assert!(!absolute.grpc);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
        assert_eq!(
            left_after_stripping(&[
                ("connection", "close, X-Session-Hop"),
                ("connection", "x-second"),
                ("x-session-hop", "1"),
                ("x-second", "2"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("te", "gzip"),
                ("host", "reviews:9080"),
                ("x-request-id", "abc"),
            ]),
            ["host", "x-request-id"]
        );
    }

    #[test]
    fn xfcc_is_built_once_per_svid_and_again_after_rotation() {
        let ca = test_support::TestCa::new("example.org");
        let svid = |id: &str| {
            let leaf = ca.leaf(id);
            let key = spiffe_core::PrivateKey::from_pkcs8_der(&leaf.key_der).unwrap();
            Arc::new(spiffe_core::X509Svid::new(leaf.chain.clone(), key).unwrap())
        };
        let peer: spiffe_core::SpiffeId = "spiffe://example.org/ns/a/sa/client".parse().unwrap();
        let memo = XfccMemo::default();
        let first = svid("spiffe://example.org/ns/a/sa/server");
        let want = "By=spiffe://example.org/ns/a/sa/server;URI=spiffe://example.org/ns/a/sa/client";
        assert_eq!(memo.value(Some(first.clone()), &peer).unwrap(), want);
        assert_eq!(memo.value(Some(first.clone()), &peer).unwrap(), want);
        assert!(Arc::ptr_eq(&memo.0.key().unwrap(), &first));
        // A rotated SVID (here with another ID) is named from then on.
        let rotated = svid("spiffe://example.org/ns/a/sa/server-v2");
        assert_eq!(
            memo.value(Some(rotated), &peer).unwrap(),
            "By=spiffe://example.org/ns/a/sa/server-v2;URI=spiffe://example.org/ns/a/sa/client"
        );
        // Without an SVID, `By` is empty (and nothing is kept for it).
        let none = XfccMemo::default();
        assert_eq!(
            none.value(None, &peer).unwrap(),
            "By=;URI=spiffe://example.org/ns/a/sa/client"
        );
        assert!(none.0.key().is_none());
    }

    #[test]
    fn connection_naming_hop_by_hop_headers_strips_them_and_nothing_else() {
        // What an application's keep-alive response carries.
        assert_eq!(
            left_after_stripping(&[("connection", "keep-alive"), ("content-length", "2")]),
            ["content-length"]
        );
        // In any case, with the header it names.
        assert_eq!(
            left_after_stripping(&[
                ("connection", "KEEP-ALIVE"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "1"),
            ]),
            ["x-kept"]
        );
        // A second Connection header naming another field: that one goes.
        assert_eq!(
            left_after_stripping(&[
                ("connection", "keep-alive"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("x-kept", "1"),
            ]),
            ["x-kept"]
        );
        // Listed in any case; TE listed by Connection goes even when it
        // only asks for trailers.
        assert_eq!(
            left_after_stripping(&[
                ("connection", "Keep-Alive, TE"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("x-kept", "1"),
            ]),
            ["x-kept"]
        );
        // Without Connection, TE: trailers stays.
        assert_eq!(
            left_after_stripping(&[("te", "trailers"), ("upgrade", "h2c")]),
            ["te"]
        );
    }

    #[test]
    fn absolute_uri_keeps_path_and_query_under_the_new_authority() {
        let authority = |a: &str| a.parse::<Authority>().unwrap();
        for (from, to, want) in [
            (
                "/reviews/1?x=1&y",
                "127.0.0.1:9080",
                "http://127.0.0.1:9080/reviews/1?x=1&y",
            ),
            ("http://other:1/p?q", "[::1]:8080", "http://[::1]:8080/p?q"),
            ("https://other", "127.0.0.1:80", "http://127.0.0.1:80/"),
            (
                "reviews.bookinfo:9080",
                "127.0.0.1:9080",
                "http://127.0.0.1:9080/",
            ),
        ] {
            let uri: http::Uri = from.parse().unwrap();
            let got = absolute_uri(uri, authority(to)).unwrap();
            assert_eq!(got.to_string(), want, "{from}");
        }
    }

    #[test]
    fn te_trailers_and_end_to_end_headers_travel() {
        let mut h = headers(&[
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            ("authorization", "Bearer t"),
        ]);
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn each_hop_by_hop_name_alone_is_found_and_stripped() {
        for name in HOP_BY_HOP {
            assert_eq!(
                left_after_stripping(&[("x-first", "1"), (name.as_str(), "v"), ("x-last", "2")]),
                ["x-first", "x-last"],
                "{name}"
            );
        }
        let mut none = headers(&[("host", "a"), ("x-connection", "close")]);
        let before = none.clone();
        strip_hop_by_hop(&mut none);
        assert_eq!(none, before);
    }

    #[test]
    fn a_connection_header_naming_nothing_valid_strips_only_itself() {
        assert_eq!(
            left_after_stripping(&[("connection", "bad name, ,"), ("x-kept", "1")]),
            ["x-kept"]
        );
    }
}
