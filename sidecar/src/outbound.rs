//! The outbound side: take the application's call, find the service,
//! pick an endpoint, originate mTLS that requires its registered identity.
//!
//! Three ways in: the application uses the listener as its `HTTP_PROXY`
//! (absolute-form requests, `CONNECT` for TCP); it sends ordinary requests
//! with `Host: service.namespace[:port]`; or iptables redirects its
//! connections here and the original destination names the endpoint.
//!
//! HTTP travels over the pooled HTTP/2 connection of the chosen endpoint.
//! Opaque TCP (`CONNECT`, or a redirected connection that is not HTTP)
//! gets an mTLS connection of its own, without ALPN, that the peer's
//! inbound detects as TCP.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use spiffe_core::SpiffeId;
use tokio::net::TcpStream;

use crate::balance::Outcome;
use crate::body::{BodyStats, Counted, ProxyBody, boxed};
use crate::config::OutboundTrafficPolicy;
use crate::deadline::{LaterDeadlines, within};
use crate::detect::{Detected, Prefixed, detect};
use crate::endpoint::{ServiceKey, Target, route, route_parsed};
use crate::h1_server::{self, Served, ServerLimits};
use crate::h2body::RecvBody;
use crate::inbound::{HttpRecord, RequestInfo, absolute_uri, status, strip_hop_by_hop};
use crate::pool::SendError;
use crate::runtime::Shared;
use crate::telemetry::{
    AccessDecision, AccessLogEntry, EntryKind, LabelMemo, Reporter, RequestLabels, RequestProtocol,
    SecurityPolicy,
};

/// The header that says why the sidecar itself answered.
pub const ERROR_HEADER: &str = "x-mesh-error";

fn mesh_error(code: u16, why: String) -> http::Response<ProxyBody> {
    let mut resp = status(code, "mesh sidecar could not deliver the request");
    if let Ok(v) = HeaderValue::try_from(why) {
        resp.headers_mut().insert(ERROR_HEADER, v);
    }
    resp
}

/// Serves one connection from the application.
pub(crate) async fn serve(shared: Arc<Shared>, mut tcp: TcpStream, remote: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let mut original = None;
    if shared.config.outbound.transparent
        && let Ok(dst) = crate::intercept::original_dst(&tcp)
        && Some(dst) != tcp.local_addr().ok()
    {
        original = Some(dst);
    }
    let mut sniffed = bytes::Bytes::new();
    let mut detected = None;
    if let Some(dst) = original {
        if shared.config.outbound.traffic_policy == OutboundTrafficPolicy::AllowAny
            && shared.endpoints.by_address(dst).is_none()
        {
            passthrough(shared, tcp, dst, remote).await;
            return;
        }
        let Ok((proto, bytes)) = detect(&mut tcp, shared.config.limits.detect_timeout).await else {
            return;
        };
        sniffed = bytes;
        detected = Some(proto);
        if !matches!(proto, Detected::Http1 | Detected::Http2) {
            let io = Prefixed::new(sniffed, tcp);
            tunnel_to_address(shared, io, dst, remote).await;
            return;
        }
    }
    let labels: OutboundLabels = LabelMemo::new();
    let routes = RouteMemo::default();
    // One request at a time on HTTP/1.1: their timeouts share one timer.
    let deadlines = Mutex::new(LaterDeadlines::new());
    let limits = &shared.config.limits;
    let (tcp, read) = if let Some(Detected::Http2) = detected {
        (tcp, sniffed)
    } else {
        let server_limits = ServerLimits {
            max_head_bytes: limits.max_header_bytes,
            header_read_timeout: limits.header_read_timeout,
        };
        let served = h1_server::serve(tcp, &sniffed, server_limits, |req| {
            handle(
                shared.clone(),
                req,
                original,
                remote,
                &labels,
                &routes,
                &deadlines,
            )
        })
        .await;
        match served {
            Served::Closed => return,
            Served::Handoff(tcp, read) => (tcp, read),
        }
    };
    // HTTP/2 with prior knowledge, or a CONNECT request: hyper's server.
    let io = Prefixed::new(read, tcp);
    let labels = Arc::new(labels);
    let routes = Arc::new(routes);
    let svc = hyper::service::service_fn({
        let shared = shared.clone();
        move |req: http::Request<Incoming>| {
            let shared = shared.clone();
            let labels = labels.clone();
            let routes = routes.clone();
            async move {
                Ok::<_, std::convert::Infallible>(if req.method() == http::Method::CONNECT {
                    connect(shared, req, remote)
                } else {
                    // Concurrent streams: a timer each.
                    let deadlines = Mutex::new(LaterDeadlines::new());
                    handle(shared, req, original, remote, &labels, &routes, &deadlines).await
                })
            }
        }
    });
    let builder = crate::inbound::server_builder(limits);
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await;
}

/// The labels of one application connection's requests, kept for the
/// local identity, service and endpoint they were built for.
type OutboundLabels = LabelMemo<(Option<SpiffeId>, ServiceKey, Target)>;

/// What one authority string resolved to: parsed, and the mesh service
/// it names.
struct Resolved {
    authority: Option<http::uri::Authority>,
    route: Option<(Arc<ServiceKey>, Option<u16>)>,
}

/// The authorities an application connection's requests named, resolved:
/// a connection names the same few (its `Host`, the default service)
/// request after request, so each is parsed and routed once.
#[derive(Default)]
struct RouteMemo {
    seen: std::sync::Mutex<Vec<(String, Arc<Resolved>)>>,
}

impl RouteMemo {
    /// Kept per connection; more distinct authorities start it over.
    const MAX: usize = 4;

    fn resolve(&self, authority: &str, namespace: &str) -> Arc<Resolved> {
        let fresh = || {
            let parsed = authority.parse::<http::uri::Authority>().ok();
            let route = parsed
                .as_ref()
                .and_then(|a| route_parsed(a, namespace))
                .map(|(key, port)| (Arc::new(key), port));
            Arc::new(Resolved {
                authority: parsed,
                route,
            })
        };
        // Concurrent HTTP/2 requests on one connection: whoever finds it
        // busy resolves on its own.
        let Ok(mut seen) = self.seen.try_lock() else {
            return fresh();
        };
        if let Some((_, r)) = seen.iter().find(|(a, _)| a == authority) {
            return r.clone();
        }
        let resolved = fresh();
        if seen.len() == Self::MAX {
            seen.clear();
        }
        seen.push((authority.to_owned(), resolved.clone()));
        resolved
    }
}

/// One request from the application (not `CONNECT`). Its timeout is timed
/// by `deadlines`, which the connection's requests share when they come
/// one at a time.
async fn handle<B>(
    shared: Arc<Shared>,
    req: http::Request<B>,
    original: Option<SocketAddr>,
    remote: SocketAddr,
    labels: &OutboundLabels,
    routes: &RouteMemo,
    deadlines: &Mutex<LaterDeadlines>,
) -> http::Response<ProxyBody>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    // The absolute-form target (or HTTP/2 `:authority`) names the
    // service; when it is only this listener's address (an HTTP/2 client
    // dialling the sidecar), the `Host` header does.
    let namespace = shared.config.workload.namespace.as_str();
    let uri_authority = req.uri().authority().map(|a| a.as_str());
    let host_header = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let mut from_host = false;
    let mut parsed = None;
    let mut routed = None;
    let candidates = [(false, uri_authority), (true, host_header)];
    for (i, (is_host, candidate)) in candidates
        .into_iter()
        .filter_map(|(h, c)| Some((h, c?)))
        .enumerate()
    {
        let resolved = routes.resolve(candidate, namespace);
        if let Some((key, _)) = &resolved.route {
            from_host = is_host;
            parsed = resolved.authority.clone();
            routed = Some(key.clone());
            break;
        }
        // Unrouted, the first authority present is the one sent on.
        if i == 0 {
            parsed = resolved.authority.clone();
        }
    }
    let routed = routed
        .or_else(|| {
            original
                .and_then(|dst| shared.endpoints.by_address(dst))
                .map(|(k, _)| Arc::new(k))
        })
        .or_else(|| {
            let fallback = shared.config.outbound.default_service.as_deref()?;
            let resolved = routes.resolve(fallback, namespace);
            resolved.route.as_ref().map(|(key, _)| key.clone())
        });
    let Some(key) = routed else {
        return mesh_error(
            503,
            format!(
                "no mesh service named by {}",
                uri_authority.or(host_header).unwrap_or("(no authority)")
            ),
        );
    };
    let Some(balancer) = shared.endpoints.service(&key) else {
        return mesh_error(503, format!("unknown service {key}"));
    };
    let (mut parts, body) = req.into_parts();
    let mut info = RequestInfo::of(&parts, shared.access_log.is_enabled());
    if from_host {
        info.authority_from_host();
    }
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(http::header::HOST);
    let uri = parsed.and_then(|a| absolute_uri(std::mem::take(&mut parts.uri), a).ok());
    let Some(uri) = uri else {
        return mesh_error(400, "request target is not a valid URI".to_owned());
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_2;
    let replay = hyper::body::Body::is_end_stream(&body).then(|| Replay {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: copy_of(&parts.headers),
    });
    let request_bytes = Arc::new(AtomicU64::new(0));
    let mut pending = Some(http::Request::from_parts(
        parts,
        boxed(Counted::new(body, request_bytes.clone())),
    ));
    let mut excluded: Vec<SocketAddr> = Vec::new();
    let attempts = shared.config.outbound.retries + 1;
    let timeout = shared.config.outbound.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error: Option<String> = None;
    for _ in 0..attempts {
        let Some(req) = pending.take() else { break };
        let Some(pick) = balancer.pick(&excluded) else {
            drop(req);
            break;
        };
        let target = pick.target().clone();
        let conn = match within(deadlines, deadline, shared.pool.get(&target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                pick.finish(Outcome::ConnectFailure);
                excluded.push(target.addr);
                last_error = Some(e.to_string());
                pending = Some(req);
                continue;
            }
            Err(_) => {
                pick.finish(Outcome::ConnectFailure);
                return mesh_error(504, format!("timed out connecting to {}", target.addr));
            }
        };
        match within(deadlines, deadline, conn.send(req)).await {
            Err(_) => {
                pick.finish(Outcome::Failure);
                return mesh_error(504, format!("request to {key} timed out after {timeout:?}"));
            }
            Ok(Ok(resp)) => {
                let code = resp.status().as_u16();
                let outcome = if code >= 500 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                return shared.record_outbound(
                    &key,
                    &target,
                    labels,
                    info,
                    started,
                    request_bytes,
                    resp,
                    pick,
                    outcome,
                    remote,
                );
            }
            Ok(Err(e)) => {
                let error = format!("http2 error: {}", e.error());
                // Not sent (the connection could take no stream): the
                // request comes back whole. Not processed by the peer
                // (REFUSED_STREAM, or excluded by its GOAWAY): rebuilt
                // when it had no body.
                let again = match e {
                    SendError::NotSent(req, _) => Some(*req),
                    SendError::Failed(e) => replay
                        .as_ref()
                        .filter(|r| not_processed(&e, &r.method))
                        .map(Replay::rebuild),
                };
                match again {
                    Some(req) => {
                        pick.finish(Outcome::ConnectFailure);
                        excluded.push(target.addr);
                        pending = Some(req);
                        last_error = Some(error);
                    }
                    None => {
                        pick.finish(Outcome::Failure);
                        return mesh_error(502, format!("{key} via {}: {error}", target.addr));
                    }
                }
            }
        }
    }
    let why = last_error.as_deref().unwrap_or("no endpoint available");
    mesh_error(503, format!("{key}: {why}"))
}

/// Whether the peer did not process the stream, so that a request without
/// a body may be sent again: it refused it (`REFUSED_STREAM`), or, for an
/// idempotent method, it announced a graceful shutdown (`GOAWAY`) that
/// excluded it (RFC 9113 §6.8: streams above the GOAWAY's last stream ID
/// were not processed; kept to idempotent methods in case the connection
/// then died with processed streams in flight).
fn not_processed(e: &h2::Error, method: &http::Method) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM)
        || (e.is_go_away() && e.is_remote() && method.is_idempotent())
}

/// A request without a body, kept so that it can be sent again.
struct Replay {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn rebuild(&self) -> http::Request<ProxyBody> {
        let mut req = http::Request::new(crate::body::text(""));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = copy_of(&self.headers);
        *req.version_mut() = http::Version::HTTP_2;
        req
    }
}

/// A copy of `headers`; an empty map's is made without allocating (a
/// map's own clone allocates its index for the capacity it had, and a
/// request whose `Host` was its only field leaves such a map).
fn copy_of(headers: &http::HeaderMap) -> http::HeaderMap {
    if headers.is_empty() {
        http::HeaderMap::new()
    } else {
        headers.clone()
    }
}

/// `CONNECT host:port`: answer 200, then tunnel the upgraded connection
/// over its own mTLS connection to an endpoint of the service.
fn connect(
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
    remote: SocketAddr,
) -> http::Response<ProxyBody> {
    let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
        return mesh_error(400, "CONNECT needs host:port".to_owned());
    };
    let namespace = shared.config.workload.namespace.as_str();
    let Some((key, _)) = route(&authority, namespace) else {
        return mesh_error(503, format!("no mesh service named by {authority}"));
    };
    if shared.endpoints.service(&key).is_none() {
        return mesh_error(503, format!("unknown service {key}"));
    }
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => tunnel(shared, TokioIo::new(upgraded), key, remote).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    http::Response::new(crate::body::text(""))
}

async fn tunnel_to_address<S>(shared: Arc<Shared>, io: S, dst: SocketAddr, remote: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match shared.endpoints.by_address(dst) {
        Some((key, _)) => tunnel(shared, io, key, remote).await,
        None => {
            tracing::debug!(%dst, "transparent TCP to an address of no mesh service: closed");
        }
    }
}

/// Opaque TCP to one endpoint of `key`, retried on connect failure.
async fn tunnel<S>(shared: Arc<Shared>, io: S, key: ServiceKey, remote: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Some(balancer) = shared.endpoints.service(&key) else {
        return;
    };
    let mut excluded = Vec::new();
    for _ in 0..=shared.config.outbound.retries {
        let Some(pick) = balancer.pick(&excluded) else {
            return;
        };
        let target = pick.target().clone();
        let stream = match crate::pool::connect_tls(&shared.tcp_connector, &target).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "TCP tunnel connect failed");
                pick.finish(Outcome::ConnectFailure);
                excluded.push(target.addr);
                continue;
            }
        };
        let mut labels = shared.labels_outbound(&key, &target);
        labels.request_protocol = RequestProtocol::Tcp;
        relay(
            &shared,
            io,
            TokioIo::new(stream),
            &labels,
            remote,
            target.addr,
        )
        .await;
        pick.finish(Outcome::Success);
        return;
    }
}

/// Istio's name for the destination of traffic passed through to an
/// address outside the mesh.
pub const PASSTHROUGH: &str = "PassthroughCluster";

/// A redirected connection to `dst`, which no mesh service owns, under
/// `ALLOW_ANY`: plain TCP from the sidecar (exempt from redirection) to
/// the original destination, bytes relayed unchanged both ways.
async fn passthrough(shared: Arc<Shared>, tcp: TcpStream, dst: SocketAddr, remote: SocketAddr) {
    let connect = TcpStream::connect(dst);
    let upstream = match tokio::time::timeout(shared.config.limits.handshake_timeout, connect).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%dst, error = %e, "passthrough connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%dst, "passthrough connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let mut labels = shared.labels_source();
    labels.destination_service = PASSTHROUGH.to_owned();
    labels.destination_service_name = PASSTHROUGH.to_owned();
    labels.request_protocol = RequestProtocol::Tcp;
    labels.connection_security_policy = SecurityPolicy::Unknown;
    relay(&shared, tcp, upstream, &labels, remote, dst).await;
}

/// Relays an opaque TCP connection to its upstream until either side
/// closes, idles out or the drain ends; counts it in the TCP metrics under
/// `labels` and logs it.
async fn relay<D, U>(
    shared: &Arc<Shared>,
    down: D,
    up: U,
    labels: &RequestLabels,
    remote: SocketAddr,
    upstream: SocketAddr,
) where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    shared.metrics.tcp_opened(labels);
    let started = Instant::now();
    let (_never, no_policy) = tokio::sync::watch::channel(0u64);
    let outcome = crate::tcp::splice(
        down,
        up,
        shared.config.limits.tcp_idle_timeout,
        no_policy,
        || true,
        shared.drain_hard.subscribe(),
        crate::tcp::Progress {
            every: shared.config.limits.tcp_report_interval,
            report: |sent, received| shared.metrics.tcp_bytes(labels, sent, received),
        },
    )
    .await;
    shared.metrics.tcp_closed(
        labels,
        outcome.to_upstream - outcome.reported_to_upstream,
        outcome.to_downstream - outcome.reported_to_downstream,
    );
    let mut entry = AccessLogEntry::new(
        EntryKind::Tcp,
        Reporter::Source,
        AccessDecision::Allow,
        remote,
        upstream,
    );
    entry.source_principal = labels.source_principal.clone();
    entry.destination_principal = labels.destination_principal.clone();
    entry.authority = Some(labels.destination_service.clone());
    entry.upstream = Some(upstream);
    entry.request_bytes = outcome.to_upstream;
    entry.response_bytes = outcome.to_downstream;
    entry.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    entry.reason = outcome.closed_by.map(str::to_owned);
    shared.access_log.log(&entry);
}

impl Shared {
    /// The labels of traffic this sidecar originates.
    pub(crate) fn labels_outbound(&self, key: &ServiceKey, target: &Target) -> RequestLabels {
        let mut labels = self.labels_source();
        labels.destination_principal = Some(target.identity.clone());
        let (ns, sa) = crate::inbound::namespace_and_account(target.identity.path());
        labels.destination_workload = sa;
        labels.destination_workload_namespace = ns;
        labels.destination_service = key.to_string();
        labels.destination_service_name = key.name.clone();
        labels.destination_service_namespace = key.namespace.clone();
        labels.connection_security_policy = SecurityPolicy::MutualTls;
        labels
    }

    /// What every label set of traffic this sidecar originates starts from:
    /// the reporter and this workload as the source.
    fn labels_source(&self) -> RequestLabels {
        RequestLabels {
            reporter: Reporter::Source,
            source_principal: self.local_spiffe_id(),
            source_workload: self.config.workload.name.clone(),
            source_workload_namespace: self.config.workload.namespace.clone(),
            ..RequestLabels::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record_outbound(
        self: &Arc<Self>,
        key: &ServiceKey,
        target: &Target,
        labels: &OutboundLabels,
        info: RequestInfo,
        started: Instant,
        request_bytes: Arc<AtomicU64>,
        resp: http::Response<RecvBody>,
        pick: crate::balance::Pick,
        outcome: Outcome,
        remote: SocketAddr,
    ) -> http::Response<ProxyBody> {
        let local = self.local_spiffe_id();
        let series = labels.series();
        let labels = labels.get(
            |(id, k, t)| *id == local && k == key && t == target,
            || (local.clone(), key.clone(), target.clone()),
            || self.labels_outbound(key, target),
        );
        let record = HttpRecord {
            labels,
            series,
            protocol: crate::inbound::request_protocol(info.grpc),
            header_grpc: info.grpc_status_in(resp.headers()),
            info,
            started,
            request_bytes,
            code: resp.status().as_u16(),
            decision: AccessDecision::Allow,
            policy: None,
            reason: None,
            source: remote,
            destination: target.addr,
            upstream: Some(target.addr),
        };
        // The endpoint's latency is the time to response headers.
        pick.finish(outcome);
        let shared = self.clone();
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = Counted::on_done(body, move |stats: BodyStats| {
            shared.finish_http(record, stats)
        });
        http::Response::from_parts(parts, boxed(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_copies_the_fields_and_an_emptied_map_costs_nothing() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("reviews"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        assert_eq!(copy_of(&headers), headers);
        headers.clear();
        assert!(headers.capacity() > 0);
        let copy = copy_of(&headers);
        assert!(copy.is_empty());
        assert_eq!(copy.capacity(), 0);
        let replay = Replay {
            method: http::Method::DELETE,
            uri: "http://reviews.default:9080/a?b".parse().expect("uri"),
            headers: copy,
        };
        let req = replay.rebuild();
        assert_eq!(req.method(), http::Method::DELETE);
        assert_eq!(req.uri(), "http://reviews.default:9080/a?b");
        assert_eq!(req.version(), http::Version::HTTP_2);
        assert!(req.headers().is_empty());
        assert!(http_body::Body::is_end_stream(req.body()));
    }

    fn owned(route: &Option<(Arc<ServiceKey>, Option<u16>)>) -> Option<(ServiceKey, Option<u16>)> {
        route.as_ref().map(|(k, p)| (ServiceKey::clone(k), *p))
    }

    #[test]
    fn the_route_memo_answers_as_route_does_and_stays_bounded() {
        let memo = RouteMemo::default();
        for a in [
            "reviews.bookinfo:9080",
            "reviews",
            "127.0.0.1:15001",
            "bad host:1",
            "reviews.bookinfo:9080",
            "reviews",
        ] {
            let got = memo.resolve(a, "default");
            assert_eq!(owned(&got.route), route(a, "default"), "{a}");
            assert_eq!(
                got.authority.as_ref().map(|x| x.as_str()),
                a.parse::<http::uri::Authority>()
                    .ok()
                    .as_ref()
                    .map(|x| x.as_str()),
                "{a}"
            );
        }
        // Four distinct authorities, each kept once.
        assert_eq!(memo.seen.lock().unwrap().len(), RouteMemo::MAX);
        // A fifth starts the memo over; answers do not change.
        let got = memo.resolve("ratings.bookinfo", "default");
        assert_eq!(owned(&got.route), route("ratings.bookinfo", "default"));
        assert_eq!(memo.seen.lock().unwrap().len(), 1);
        // Asked again, the memo gives the same answer.
        let again = memo.resolve("ratings.bookinfo", "default");
        assert_eq!(again.route, got.route);
    }
}
