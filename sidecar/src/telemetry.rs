//! What the sidecar reports: Prometheus metrics under Istio's names and a
//! JSON access log.
//!
//! [`Metrics`] exposes Istio's standard metrics (`istio_requests_total`,
//! `istio_request_duration_milliseconds`, the TCP counters, …) with Istio's
//! label names and its `"unknown"` for values not known, so Istio's
//! dashboards and alerts work unchanged, plus a few `mesh_*` metrics Istio
//! lacks. The number of distinct label sets is bounded (see
//! [`MetricsConfig`]).
//!
//! [`AccessLog`] writes one JSON object per line for each request or
//! connection ([`AccessLogEntry`]). Query strings, fragments and URL user
//! information are never written: they are where tokens and passwords end
//! up. Envoy logs the query; we choose privacy.
//!
//! ```
//! use std::time::Duration;
//! use mesh_sidecar::telemetry::{Metrics, MetricsConfig, RequestLabels, Reporter};
//!
//! let metrics = Metrics::new(MetricsConfig::default());
//! let labels = RequestLabels {
//!     reporter: Reporter::Destination,
//!     response_code: 200,
//!     destination_service_name: "api".into(),
//!     ..RequestLabels::default()
//! };
//! metrics.request(&labels, Duration::from_millis(12), 310, 1024);
//! let text = metrics.encode();
//! assert!(text.contains("istio_requests_total{reporter=\"destination\""));
//! ```

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize, Serializer};
use spiffe_core::SpiffeId;

use crate::memo::KeptFor;

/// The HTTP `Content-Type` of [`Metrics::encode`]'s output (OpenMetrics
/// text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Istio's value for a label whose value is not known.
const UNKNOWN: &str = "unknown";
/// The value that replaces high-cardinality labels past the bound.
const OVERFLOW: &str = "overflow";

/// Istio's buckets for `istio_request_duration_milliseconds`.
const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Which side of a request reports it (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reporter {
    /// The client's sidecar (outbound).
    Source,
    /// The server's sidecar (inbound).
    Destination,
}

impl Reporter {
    fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// Istio's `request_protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    /// HTTP/1 or HTTP/2, not gRPC.
    Http,
    /// gRPC.
    Grpc,
    /// Opaque TCP.
    Tcp,
}

impl RequestProtocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestProtocol::Http => "http",
            RequestProtocol::Grpc => "grpc",
            RequestProtocol::Tcp => "tcp",
        }
    }
}

/// Istio's `connection_security_policy` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityPolicy {
    /// The connection was mutual TLS.
    MutualTls,
    /// The connection was plaintext.
    None,
    /// Not known (Istio's value on the source side).
    Unknown,
}

impl SecurityPolicy {
    fn as_str(self) -> &'static str {
        match self {
            SecurityPolicy::MutualTls => "mutual_tls",
            SecurityPolicy::None => "none",
            SecurityPolicy::Unknown => UNKNOWN,
        }
    }
}

/// The `direction` label of `mesh_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We were the TLS server.
    Inbound,
    /// We were the TLS client.
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The labels of one request or connection, as Istio names them.
///
/// [`Default`] gives `reporter` destination, `request_protocol` http,
/// `connection_security_policy` unknown, `response_code` 0, empty
/// `grpc_response_status`, `response_flags` `-` and `"unknown"` for
/// everything else: set what is known. TCP metrics use the same labels
/// without `response_code` and `grpc_response_status`, with
/// `request_protocol` always `tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    /// Which side reports.
    pub reporter: Reporter,
    /// The client workload's name.
    pub source_workload: String,
    /// The client workload's namespace.
    pub source_workload_namespace: String,
    /// The client's verified identity; `None` renders `unknown`.
    pub source_principal: Option<SpiffeId>,
    /// The client's `app` label.
    pub source_app: String,
    /// The client's `version` label.
    pub source_version: String,
    /// The client's canonical service.
    pub source_canonical_service: String,
    /// The client's canonical revision.
    pub source_canonical_revision: String,
    /// The client's cluster.
    pub source_cluster: String,
    /// The server workload's name.
    pub destination_workload: String,
    /// The server workload's namespace.
    pub destination_workload_namespace: String,
    /// The server's verified identity; `None` renders `unknown`.
    pub destination_principal: Option<SpiffeId>,
    /// The server's `app` label.
    pub destination_app: String,
    /// The server's `version` label.
    pub destination_version: String,
    /// The destination service's host name.
    pub destination_service: String,
    /// The destination service's short name.
    pub destination_service_name: String,
    /// The destination service's namespace.
    pub destination_service_namespace: String,
    /// The server's canonical service.
    pub destination_canonical_service: String,
    /// The server's canonical revision.
    pub destination_canonical_revision: String,
    /// The server's cluster.
    pub destination_cluster: String,
    /// HTTP, gRPC or TCP.
    pub request_protocol: RequestProtocol,
    /// The HTTP status; 0 when there was no response, as Envoy reports.
    pub response_code: u16,
    /// The gRPC status code; empty when the request is not gRPC.
    pub grpc_response_status: String,
    /// Envoy-style response flags (`UF`, `URX`, …); `-` for none.
    pub response_flags: String,
    /// Whether the connection was mutual TLS.
    pub connection_security_policy: SecurityPolicy,
}

impl Default for RequestLabels {
    fn default() -> Self {
        let unknown = || UNKNOWN.to_owned();
        Self {
            reporter: Reporter::Destination,
            source_workload: unknown(),
            source_workload_namespace: unknown(),
            source_principal: None,
            source_app: unknown(),
            source_version: unknown(),
            source_canonical_service: unknown(),
            source_canonical_revision: unknown(),
            source_cluster: unknown(),
            destination_workload: unknown(),
            destination_workload_namespace: unknown(),
            destination_principal: None,
            destination_app: unknown(),
            destination_version: unknown(),
            destination_service: unknown(),
            destination_service_name: unknown(),
            destination_service_namespace: unknown(),
            destination_canonical_service: unknown(),
            destination_canonical_revision: unknown(),
            destination_cluster: unknown(),
            request_protocol: RequestProtocol::Http,
            response_code: 0,
            grpc_response_status: String::new(),
            response_flags: "-".to_owned(),
            connection_security_policy: SecurityPolicy::Unknown,
        }
    }
}

/// The labels request and TCP metrics share, in Istio's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PeerSet {
    reporter: &'static str,
    source_workload: String,
    source_workload_namespace: String,
    source_principal: String,
    source_app: String,
    source_version: String,
    source_canonical_service: String,
    source_canonical_revision: String,
    source_cluster: String,
    destination_workload: String,
    destination_workload_namespace: String,
    destination_principal: String,
    destination_app: String,
    destination_version: String,
    destination_service: String,
    destination_service_name: String,
    destination_service_namespace: String,
    destination_canonical_service: String,
    destination_canonical_revision: String,
    destination_cluster: String,
}

impl PeerSet {
    fn new(l: &RequestLabels) -> Self {
        let principal = |id: &Option<SpiffeId>| match id {
            Some(id) => id.to_string(),
            None => UNKNOWN.to_owned(),
        };
        Self {
            reporter: l.reporter.as_str(),
            source_workload: l.source_workload.clone(),
            source_workload_namespace: l.source_workload_namespace.clone(),
            source_principal: principal(&l.source_principal),
            source_app: l.source_app.clone(),
            source_version: l.source_version.clone(),
            source_canonical_service: l.source_canonical_service.clone(),
            source_canonical_revision: l.source_canonical_revision.clone(),
            source_cluster: l.source_cluster.clone(),
            destination_workload: l.destination_workload.clone(),
            destination_workload_namespace: l.destination_workload_namespace.clone(),
            destination_principal: principal(&l.destination_principal),
            destination_app: l.destination_app.clone(),
            destination_version: l.destination_version.clone(),
            destination_service: l.destination_service.clone(),
            destination_service_name: l.destination_service_name.clone(),
            destination_service_namespace: l.destination_service_namespace.clone(),
            destination_canonical_service: l.destination_canonical_service.clone(),
            destination_canonical_revision: l.destination_canonical_revision.clone(),
            destination_cluster: l.destination_cluster.clone(),
        }
    }

    /// This set with principals, workloads, services, apps, versions and
    /// canonical names replaced by `overflow`; namespaces, clusters and the
    /// reporter stay.
    fn overflowed(self) -> Self {
        let o = || OVERFLOW.to_owned();
        Self {
            source_workload: o(),
            source_principal: o(),
            source_app: o(),
            source_version: o(),
            source_canonical_service: o(),
            source_canonical_revision: o(),
            destination_workload: o(),
            destination_principal: o(),
            destination_app: o(),
            destination_version: o(),
            destination_service: o(),
            destination_service_name: o(),
            destination_canonical_service: o(),
            destination_canonical_revision: o(),
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestSet {
    #[prometheus(flatten)]
    peers: PeerSet,
    request_protocol: &'static str,
    response_code: String,
    grpc_response_status: String,
    response_flags: String,
    connection_security_policy: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TcpSet {
    #[prometheus(flatten)]
    peers: PeerSet,
    request_protocol: &'static str,
    response_flags: String,
    connection_security_policy: &'static str,
}

/// A label set that can give up its high-cardinality values.
trait Overflow {
    fn overflowed(self) -> Self;
}

impl Overflow for RequestSet {
    fn overflowed(self) -> Self {
        Self {
            peers: self.peers.overflowed(),
            ..self
        }
    }
}

impl Overflow for TcpSet {
    fn overflowed(self) -> Self {
        Self {
            peers: self.peers.overflowed(),
            ..self
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuthzSet {
    reporter: &'static str,
    policy: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsSet {
    direction: &'static str,
    reason: &'static str,
}

/// Metrics settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// The most distinct request and TCP label sets kept (both kinds
    /// together). A recording with a new set past this bound is kept under
    /// the same set with principals, workloads, services, apps, versions and
    /// canonical names replaced by `overflow`, and counted in
    /// `mesh_metrics_label_sets_dropped_total`. Overflow sets themselves do
    /// not count towards the bound.
    pub max_label_sets: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_label_sets: 2000,
        }
    }
}

/// The label sets admitted so far.
#[derive(Debug, Default)]
struct Admitted {
    requests: HashSet<RequestSet>,
    tcp: HashSet<TcpSet>,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// The four request series of one admitted label set, resolved once so
/// that recording a request is a lookup and four atomic updates rather than
/// building and hashing the label set four times.
#[derive(Debug)]
struct RequestSeries {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl RequestSeries {
    fn record(&self, duration: Duration, request_bytes: u64, response_bytes: u64) {
        self.requests.inc();
        self.duration.observe(duration.as_secs_f64() * 1000.0);
        // Precision past 2^53 bytes does not matter to a histogram.
        self.request_bytes.observe(request_bytes as f64);
        self.response_bytes.observe(response_bytes as f64);
    }
}

/// Outcomes one connection keeps series for (more go the shared way).
const MEMO_VARIANTS: usize = 8;

/// The series one connection's requests recorded into, for the label set
/// they were resolved under (held, so that its address, which a hit is
/// recognised by, is not reused by another set).
#[derive(Debug, Default)]
pub(crate) struct SeriesMemo {
    last: Mutex<Option<(Arc<RequestLabels>, Vec<Variant>)>>,
}

impl SeriesMemo {
    fn lock(&self) -> MutexGuard<'_, Option<(Arc<RequestLabels>, Vec<Variant>)>> {
        // Written whole or pushed to: consistent even if a panic poisoned it.
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(
        &self,
        base: &Arc<RequestLabels>,
        outcome: &RequestOutcome<'_>,
    ) -> Option<Arc<RequestSeries>> {
        let last = self.lock();
        let (labels, variants) = last.as_ref()?;
        if !Arc::ptr_eq(labels, base) {
            return None;
        }
        Variant::find(variants, outcome)
    }

    fn keep(
        &self,
        base: &Arc<RequestLabels>,
        outcome: &RequestOutcome<'_>,
        series: &Arc<RequestSeries>,
    ) {
        let variant = Variant::new(outcome, series);
        let mut last = self.lock();
        match last.as_mut() {
            Some((labels, variants)) if Arc::ptr_eq(labels, base) => {
                if variants.len() < MEMO_VARIANTS {
                    variants.push(variant);
                }
            }
            _ => *last = Some((base.clone(), vec![variant])),
        }
    }
}

/// One request's series under its connection's labels: the labels a
/// request adds (protocol, status, gRPC status) and what they resolved to.
#[derive(Debug, Clone)]
struct Variant {
    protocol: RequestProtocol,
    response_code: u16,
    grpc_response_status: String,
    series: Arc<RequestSeries>,
}

impl Variant {
    fn new(outcome: &RequestOutcome<'_>, series: &Arc<RequestSeries>) -> Self {
        Variant {
            protocol: outcome.protocol,
            response_code: outcome.response_code,
            grpc_response_status: outcome.grpc_response_status.to_owned(),
            series: series.clone(),
        }
    }

    /// The series of the variant among `variants` that `outcome` matches.
    fn find(variants: &[Variant], outcome: &RequestOutcome<'_>) -> Option<Arc<RequestSeries>> {
        variants
            .iter()
            .find(|v| v.matches(outcome))
            .map(|v| v.series.clone())
    }

    fn matches(&self, outcome: &RequestOutcome<'_>) -> bool {
        self.protocol == outcome.protocol
            && self.response_code == outcome.response_code
            && self.grpc_response_status == outcome.grpc_response_status
    }
}

/// Resolved series by the labels that produced them: the connection's
/// labels, then a short list of the outcomes seen under them. Only
/// admitted sets enter (an overflowed recording goes the slow way, so that
/// it is counted as dropped), hence at most `max_label_sets` variants; the
/// map is hashed with a per-process seeded fast hash.
type SeriesCache = HashMap<RequestLabels, Vec<Variant>, foldhash::fast::RandomState>;

/// What one request adds to the labels of its connection (see
/// [`Metrics::request_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOutcome<'a> {
    /// HTTP or gRPC.
    pub protocol: RequestProtocol,
    /// The HTTP status; 0 when there was no response.
    pub response_code: u16,
    /// The gRPC status code; empty when the request is not gRPC.
    pub grpc_response_status: &'a str,
}

impl<'a> RequestOutcome<'a> {
    /// The outcome `labels` already carry.
    pub fn of(labels: &'a RequestLabels) -> Self {
        RequestOutcome {
            protocol: labels.request_protocol,
            response_code: labels.response_code,
            grpc_response_status: &labels.grpc_response_status,
        }
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS_MS)
}

fn bytes_histogram() -> Histogram {
    // 1, 10, …, 10^7: Istio's byte buckets.
    Histogram::new(exponential_buckets(1.0, 10.0, 8))
}

/// The sidecar's Prometheus metrics.
///
/// Recording takes `&self`; share one `Metrics` by `Arc`. Exposed names are
/// Istio's exactly; `prometheus-client` adds the `_total` of counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    max_label_sets: usize,
    admitted: Mutex<Admitted>,
    series: Mutex<SeriesCache>,
    requests: Family<RequestSet, Counter>,
    request_duration: HistogramFamily<RequestSet>,
    request_bytes: HistogramFamily<RequestSet>,
    response_bytes: HistogramFamily<RequestSet>,
    tcp_opened: Family<TcpSet, Counter>,
    tcp_closed: Family<TcpSet, Counter>,
    tcp_sent: Family<TcpSet, Counter>,
    tcp_received: Family<TcpSet, Counter>,
    authz_denials: Family<AuthzSet, Counter>,
    tls_failures: Family<TlsSet, Counter>,
    certificate_expiry: Gauge<f64, AtomicU64>,
    label_sets_dropped: Counter,
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new(config: MetricsConfig) -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let request_duration = HistogramFamily::new_with_constructor(duration_histogram as _);
        let request_bytes = HistogramFamily::new_with_constructor(bytes_histogram as _);
        let response_bytes = HistogramFamily::new_with_constructor(bytes_histogram as _);
        let tcp_opened = Family::default();
        let tcp_closed = Family::default();
        let tcp_sent = Family::default();
        let tcp_received = Family::default();
        let authz_denials = Family::default();
        let tls_failures = Family::default();
        let certificate_expiry = Gauge::default();
        let label_sets_dropped = Counter::default();

        let r = &mut registry;
        r.register("istio_requests", "Requests", requests.clone());
        r.register(
            "istio_request_duration_milliseconds",
            "Request durations in milliseconds",
            request_duration.clone(),
        );
        r.register(
            "istio_request_bytes",
            "Request body sizes in bytes",
            request_bytes.clone(),
        );
        r.register(
            "istio_response_bytes",
            "Response body sizes in bytes",
            response_bytes.clone(),
        );
        r.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            tcp_opened.clone(),
        );
        r.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            tcp_closed.clone(),
        );
        r.register(
            "istio_tcp_sent_bytes",
            "Bytes sent in the response direction of TCP connections",
            tcp_sent.clone(),
        );
        r.register(
            "istio_tcp_received_bytes",
            "Bytes received in the request direction of TCP connections",
            tcp_received.clone(),
        );
        r.register(
            "mesh_authz_denials",
            "Requests and connections denied by authorization",
            authz_denials.clone(),
        );
        r.register(
            "mesh_tls_handshake_failures",
            "Failed TLS handshakes",
            tls_failures.clone(),
        );
        r.register(
            "mesh_certificate_expiry_seconds",
            "Seconds until the current X.509-SVID expires",
            certificate_expiry.clone(),
        );
        r.register(
            "mesh_metrics_label_sets_dropped",
            "Recordings whose new label set exceeded the bound, kept under overflow labels",
            label_sets_dropped.clone(),
        );

        Self {
            registry,
            max_label_sets: config.max_label_sets,
            admitted: Mutex::new(Admitted::default()),
            series: Mutex::new(SeriesCache::default()),
            requests,
            request_duration,
            request_bytes,
            response_bytes,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
            authz_denials,
            tls_failures,
            certificate_expiry,
            label_sets_dropped,
        }
    }

    /// The OpenMetrics text exposition of every metric (serve it with
    /// [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String does not fail; keep what was written.
            tracing::warn!(%error, "encoding metrics");
        }
        out
    }

    /// Records one finished HTTP or gRPC request.
    pub fn request(
        &self,
        labels: &RequestLabels,
        duration: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        self.request_with(
            labels,
            RequestOutcome::of(labels),
            duration,
            request_bytes,
            response_bytes,
        );
    }

    /// Records one finished request under `base` with `outcome`'s
    /// protocol, status and gRPC status in place of `base`'s own: the
    /// same series [`Metrics::request`] records with those fields set,
    /// without building a label set per request. `base` is meant to be the
    /// labels every request of a connection shares.
    pub fn request_with(
        &self,
        base: &RequestLabels,
        outcome: RequestOutcome<'_>,
        duration: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let (series, _) = self.series_for(base, outcome);
        series.record(duration, request_bytes, response_bytes);
    }

    /// [`Metrics::request_with`] for a connection's requests: `memo` keeps
    /// the series the connection's label set `base` resolved to, so a
    /// request under the same `Arc` of labels and an outcome seen before
    /// records without hashing the labels. Only admitted sets are kept, so
    /// every overflowed recording still counts as dropped.
    pub(crate) fn request_memo(
        &self,
        memo: &SeriesMemo,
        base: &Arc<RequestLabels>,
        outcome: RequestOutcome<'_>,
        duration: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        if let Some(series) = memo.get(base, &outcome) {
            series.record(duration, request_bytes, response_bytes);
            return;
        }
        let (series, admitted) = self.series_for(base, outcome);
        if admitted {
            memo.keep(base, &outcome, &series);
        }
        series.record(duration, request_bytes, response_bytes);
    }

    /// The series of `base` with `outcome`, and whether its set was
    /// admitted (cached sets always were).
    fn series_for(
        &self,
        base: &RequestLabels,
        outcome: RequestOutcome<'_>,
    ) -> (Arc<RequestSeries>, bool) {
        let cached = self
            .lock_series()
            .get(base)
            .and_then(|variants| Variant::find(variants, &outcome));
        match cached {
            Some(series) => (series, true),
            None => self.resolve_request(base, outcome),
        }
    }

    /// The series for `base` with `outcome`: its own set's, cached from
    /// then on, if the set is admitted; otherwise its overflow set's, not
    /// cached, so that every such recording counts as dropped.
    #[cold]
    fn resolve_request(
        &self,
        base: &RequestLabels,
        outcome: RequestOutcome<'_>,
    ) -> (Arc<RequestSeries>, bool) {
        let set = RequestSet {
            peers: PeerSet::new(base),
            request_protocol: outcome.protocol.as_str(),
            response_code: outcome.response_code.to_string(),
            grpc_response_status: outcome.grpc_response_status.to_owned(),
            response_flags: base.response_flags.clone(),
            connection_security_policy: base.connection_security_policy.as_str(),
        };
        let (set, admitted) = self.admit(set, |a| &mut a.requests);
        // prometheus-client's handles share their value with the family, so
        // a resolved series records into the exposed metric.
        let series = Arc::new(RequestSeries {
            requests: self.requests.get_or_create(&set).clone(),
            duration: self.request_duration.get_or_create(&set).clone(),
            request_bytes: self.request_bytes.get_or_create(&set).clone(),
            response_bytes: self.response_bytes.get_or_create(&set).clone(),
        });
        if admitted {
            let mut cache = self.lock_series();
            let variants: usize = cache.values().map(Vec::len).sum();
            if variants >= self.max_label_sets {
                // Only admitted sets enter, so this does not happen; it
                // bounds the map regardless.
                cache.clear();
            }
            let known = cache.entry(base.clone()).or_default();
            // Two first recordings of one set may race here; keep one.
            if !known.iter().any(|v| v.matches(&outcome)) {
                known.push(Variant::new(&outcome, &series));
            }
        }
        (series, admitted)
    }

    /// Records an opened TCP connection.
    pub fn tcp_opened(&self, labels: &RequestLabels) {
        let set = self.tcp_set(labels);
        self.tcp_opened.get_or_create(&set).inc();
    }

    /// Records a closed TCP connection and the bytes not yet reported by
    /// [`Metrics::tcp_bytes`]: `sent` in the response direction (server to
    /// client) and `received` in the request direction, as Istio counts
    /// them.
    pub fn tcp_closed(&self, labels: &RequestLabels, sent: u64, received: u64) {
        let set = self.tcp_set(labels);
        self.tcp_closed.get_or_create(&set).inc();
        self.tcp_sent.get_or_create(&set).inc_by(sent);
        self.tcp_received.get_or_create(&set).inc_by(received);
    }

    /// Adds bytes an open TCP connection moved (reported periodically, as
    /// Envoy does, so long-lived connections show before they close).
    pub fn tcp_bytes(&self, labels: &RequestLabels, sent: u64, received: u64) {
        let set = self.tcp_set(labels);
        self.tcp_sent.get_or_create(&set).inc_by(sent);
        self.tcp_received.get_or_create(&set).inc_by(received);
    }

    /// Counts a request or connection denied by authorization. `policy` is
    /// the deciding rule (`None`, the default deny, renders `none`);
    /// `reason` is a fixed word such as `"deny_matched"`, static so that the
    /// label stays bounded.
    pub fn authz_denied(&self, reporter: Reporter, policy: Option<&str>, reason: &'static str) {
        let set = AuthzSet {
            reporter: reporter.as_str(),
            policy: policy.unwrap_or("none").to_owned(),
            reason,
        };
        self.authz_denials.get_or_create(&set).inc();
    }

    /// Counts a failed TLS handshake; `reason` is a fixed word such as
    /// `"unknown_ca"` or `"wrong_identity"`.
    pub fn tls_handshake_failed(&self, direction: Direction, reason: &'static str) {
        let set = TlsSet {
            direction: direction.as_str(),
            reason,
        };
        self.tls_failures.get_or_create(&set).inc();
    }

    /// Sets the seconds until the current X.509-SVID expires (negative once
    /// it has).
    pub fn set_certificate_expiry(&self, seconds: f64) {
        self.certificate_expiry.set(seconds);
    }

    fn tcp_set(&self, labels: &RequestLabels) -> TcpSet {
        let set = TcpSet {
            peers: PeerSet::new(labels),
            request_protocol: RequestProtocol::Tcp.as_str(),
            response_flags: labels.response_flags.clone(),
            connection_security_policy: labels.connection_security_policy.as_str(),
        };
        self.admit(set, |a| &mut a.tcp).0
    }

    /// `(set, true)` if it is known or there is room for it, else its
    /// overflow form (counted as dropped) and `false`.
    fn admit<S>(&self, set: S, kind: fn(&mut Admitted) -> &mut HashSet<S>) -> (S, bool)
    where
        S: Overflow + Clone + Eq + Hash,
    {
        let mut admitted = self.lock_admitted();
        let total = admitted.requests.len() + admitted.tcp.len();
        let known = kind(&mut admitted);
        if known.contains(&set) {
            return (set, true);
        }
        if total < self.max_label_sets {
            known.insert(set.clone());
            return (set, true);
        }
        drop(admitted);
        self.label_sets_dropped.inc();
        (set.overflowed(), false)
    }

    fn lock_series(&self) -> MutexGuard<'_, SeriesCache> {
        // A map of handles stays consistent even if a panic poisoned the
        // lock.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_admitted(&self) -> MutexGuard<'_, Admitted> {
        // Inserting into a set leaves it consistent even if a panic
        // poisoned the lock.
        self.admitted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The labels one connection's requests share, built on its first request
/// and again only when what they were built from changes (the local
/// SPIFFE ID, which a rotation may change; outbound, the service and
/// endpoint).
pub(crate) struct LabelMemo<K> {
    last: KeptFor<K, Arc<RequestLabels>>,
    /// The series those labels resolved to.
    series: Arc<SeriesMemo>,
}

impl<K> LabelMemo<K> {
    pub(crate) fn new() -> Self {
        LabelMemo {
            last: KeptFor::new(),
            series: Arc::default(),
        }
    }

    /// Where the connection's requests keep their resolved series.
    pub(crate) fn series(&self) -> Arc<SeriesMemo> {
        self.series.clone()
    }

    /// The kept labels if `fresh` accepts the key they were built for;
    /// otherwise `build`'s, kept under `key`.
    pub(crate) fn get(
        &self,
        fresh: impl FnOnce(&K) -> bool,
        key: impl FnOnce() -> K,
        build: impl FnOnce() -> RequestLabels,
    ) -> Arc<RequestLabels> {
        self.last.get(fresh, key, || Arc::new(build()))
    }
}

/// What an [`AccessLogEntry`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// One HTTP or gRPC request.
    Http,
    /// One TCP connection.
    Tcp,
}

/// Whether authorization let the request or connection through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessDecision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// One access-log record, written as one JSON line.
///
/// `time` is written in RFC 3339 UTC with milliseconds. `path` is written
/// without its query string or fragment, and `authority` without user
/// information: tokens travel there and must not reach logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLogEntry {
    /// When the request or connection started.
    #[serde(serialize_with = "serialize_time")]
    pub time: SystemTime,
    /// HTTP request or TCP connection.
    pub kind: EntryKind,
    /// Which side logs.
    pub reporter: Reporter,
    /// The client's verified identity, if any.
    pub source_principal: Option<SpiffeId>,
    /// The server's verified identity, if any.
    pub destination_principal: Option<SpiffeId>,
    /// The client's address as accepted.
    pub source_address: SocketAddr,
    /// The address the client connected to.
    pub destination_address: SocketAddr,
    /// The HTTP method.
    pub method: Option<String>,
    /// The request path; logged without query or fragment.
    #[serde(serialize_with = "serialize_path")]
    pub path: Option<String>,
    /// The request authority; logged without user information.
    #[serde(serialize_with = "serialize_authority")]
    pub authority: Option<String>,
    /// `HTTP/1.1`, `HTTP/2`, `tcp`, ….
    pub protocol: Option<String>,
    /// The HTTP status sent to the client.
    pub status: Option<u16>,
    /// Request body (or client-to-server) bytes.
    pub request_bytes: u64,
    /// Response body (or server-to-client) bytes.
    pub response_bytes: u64,
    /// Duration until the response ended or the connection closed.
    pub duration_ms: u64,
    /// The endpoint the request was forwarded to.
    pub upstream: Option<SocketAddr>,
    /// Whether authorization allowed it.
    pub decision: AccessDecision,
    /// The deciding policy, if any.
    pub policy: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
    /// Envoy-style response flags; `-` for none.
    pub response_flags: String,
}

impl AccessLogEntry {
    /// An entry stamped now with the facts every record has; the rest empty
    /// (`None`, zero, response flags `-`).
    pub fn new(
        kind: EntryKind,
        reporter: Reporter,
        decision: AccessDecision,
        source_address: SocketAddr,
        destination_address: SocketAddr,
    ) -> Self {
        Self {
            time: SystemTime::now(),
            kind,
            reporter,
            source_principal: None,
            destination_principal: None,
            source_address,
            destination_address,
            method: None,
            path: None,
            authority: None,
            protocol: None,
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0,
            upstream: None,
            decision,
            policy: None,
            reason: None,
            response_flags: "-".to_owned(),
        }
    }
}

fn serialize_time<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*time))
}

fn serialize_path<S: Serializer>(path: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => s.serialize_some(strip_query(path)),
        None => s.serialize_none(),
    }
}

fn serialize_authority<S: Serializer>(auth: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match auth {
        Some(auth) => s.serialize_some(auth.rsplit_once('@').map_or(auth.as_str(), |(_, h)| h)),
        None => s.serialize_none(),
    }
}

/// The path up to its first `?` or `#`.
fn strip_query(path: &str) -> &str {
    path.find(['?', '#']).map_or(path, |end| &path[..end])
}

/// `time` as RFC 3339 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`,
/// truncated to the millisecond and clamped to years 0000–9999.
fn format_rfc3339(time: SystemTime) -> String {
    const MIN_MS: i128 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
    const MAX_MS: i128 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let nanos: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    let millis = nanos.div_euclid(1_000_000).clamp(MIN_MS, MAX_MS);
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        millis.rem_euclid(1000),
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`: eras of 400 years starting on 1 March).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from 1 March
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// Where access-log lines go.
enum Sink {
    Disabled,
    Writer(Mutex<Box<dyn Write + Send>>),
}

/// A JSON-lines access log.
///
/// Each [`log`](Self::log) writes one line and flushes, under a lock, so
/// lines from concurrent requests never interleave. I/O errors never
/// panic: they are counted ([`write_errors`](Self::write_errors)).
pub struct AccessLog {
    sink: Sink,
    errors: AtomicU64,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match self.sink {
            Sink::Disabled => "disabled",
            Sink::Writer(_) => "writer",
        };
        f.debug_struct("AccessLog")
            .field("sink", &sink)
            .field("errors", &self.errors)
            .finish()
    }
}

impl AccessLog {
    /// Logs to standard output.
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(std::io::stdout()))
    }

    /// Logs to `writer`.
    pub fn to_writer(writer: Box<dyn Write + Send>) -> Self {
        Self {
            sink: Sink::Writer(Mutex::new(writer)),
            errors: AtomicU64::new(0),
        }
    }

    /// Logs nothing.
    pub fn disabled() -> Self {
        Self {
            sink: Sink::Disabled,
            errors: AtomicU64::new(0),
        }
    }

    /// Whether lines are written anywhere.
    pub fn is_enabled(&self) -> bool {
        matches!(self.sink, Sink::Writer(_))
    }

    /// Writes `entry` as one JSON line.
    pub fn log(&self, entry: &AccessLogEntry) {
        let Sink::Writer(writer) = &self.sink else {
            return;
        };
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        line.push(b'\n');
        // A panic while writing leaves at worst a partial line.
        let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
        if writer
            .write_all(&line)
            .and_then(|()| writer.flush())
            .is_err()
        {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many lines could not be written.
    pub fn write_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io;
    use std::sync::Arc;

    use super::*;

    /// One sample line of an exposition: name, labels in order, value.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: String,
    }

    fn samples(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("name and value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                Sample {
                    name: name.to_owned(),
                    labels,
                    value: value.to_owned(),
                }
            })
            .collect()
    }

    /// `k="v",k="v"` without escapes (test values have none).
    fn parse_labels(mut rest: &str) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        while let Some((key, after)) = rest.split_once("=\"") {
            let (value, after) = after.split_once('"').expect("closing quote");
            labels.push((key.to_owned(), value.to_owned()));
            rest = after.trim_start_matches(',');
        }
        labels
    }

    fn label<'a>(sample: &'a Sample, key: &str) -> &'a str {
        sample
            .labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no label {key} in {sample:?}"))
    }

    fn find<'a>(all: &'a [Sample], name: &str) -> Vec<&'a Sample> {
        all.iter().filter(|s| s.name == name).collect()
    }

    fn id(s: &str) -> SpiffeId {
        s.parse().expect("a valid SPIFFE ID")
    }

    fn http_labels() -> RequestLabels {
        RequestLabels {
            reporter: Reporter::Destination,
            source_workload: "web".into(),
            source_workload_namespace: "prod".into(),
            source_principal: Some(id("spiffe://example.org/ns/prod/sa/web")),
            destination_workload: "api".into(),
            destination_workload_namespace: "prod".into(),
            destination_principal: Some(id("spiffe://example.org/ns/prod/sa/api")),
            destination_service: "api.prod.svc.cluster.local".into(),
            destination_service_name: "api".into(),
            destination_service_namespace: "prod".into(),
            response_code: 200,
            connection_security_policy: SecurityPolicy::MutualTls,
            ..RequestLabels::default()
        }
    }

    fn record_everything(m: &Metrics) {
        let labels = http_labels();
        m.request(&labels, Duration::from_millis(12), 300, 4000);
        m.tcp_opened(&labels);
        m.tcp_closed(&labels, 100, 40);
        m.authz_denied(Reporter::Destination, None, "no_allow_matched");
        m.tls_handshake_failed(Direction::Inbound, "unknown_ca");
        m.set_certificate_expiry(3600.5);
    }

    #[test]
    fn exposes_exactly_istios_names() {
        let m = Metrics::new(MetricsConfig::default());
        record_everything(&m);
        let text = m.encode();
        let names: BTreeSet<String> = samples(&text).into_iter().map(|s| s.name).collect();
        let mut expected = BTreeSet::new();
        for histogram in [
            "istio_request_duration_milliseconds",
            "istio_request_bytes",
            "istio_response_bytes",
        ] {
            for suffix in ["_bucket", "_sum", "_count"] {
                expected.insert(format!("{histogram}{suffix}"));
            }
        }
        for name in [
            "istio_requests_total",
            "istio_tcp_connections_opened_total",
            "istio_tcp_connections_closed_total",
            "istio_tcp_sent_bytes_total",
            "istio_tcp_received_bytes_total",
            "mesh_authz_denials_total",
            "mesh_tls_handshake_failures_total",
            "mesh_certificate_expiry_seconds",
            "mesh_metrics_label_sets_dropped_total",
        ] {
            expected.insert(name.to_owned());
        }
        assert_eq!(names, expected, "{text}");
        assert!(!text.contains("_total_total"));
        assert!(text.contains("# TYPE istio_requests counter\n"));
        assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn request_labels_are_istios_standard_set() {
        let m = Metrics::new(MetricsConfig::default());
        m.request(&http_labels(), Duration::from_millis(3), 0, 0);
        let all = samples(&m.encode());
        let [sample] = find(&all, "istio_requests_total")[..] else {
            panic!("one series");
        };
        let keys: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "reporter",
                "source_workload",
                "source_workload_namespace",
                "source_principal",
                "source_app",
                "source_version",
                "source_canonical_service",
                "source_canonical_revision",
                "source_cluster",
                "destination_workload",
                "destination_workload_namespace",
                "destination_principal",
                "destination_app",
                "destination_version",
                "destination_service",
                "destination_service_name",
                "destination_service_namespace",
                "destination_canonical_service",
                "destination_canonical_revision",
                "destination_cluster",
                "request_protocol",
                "response_code",
                "grpc_response_status",
                "response_flags",
                "connection_security_policy",
            ]
        );
        assert_eq!(sample.value, "1");
        assert_eq!(label(sample, "reporter"), "destination");
        assert_eq!(
            label(sample, "source_principal"),
            "spiffe://example.org/ns/prod/sa/web"
        );
        assert_eq!(label(sample, "source_app"), "unknown");
        assert_eq!(label(sample, "destination_cluster"), "unknown");
        assert_eq!(label(sample, "request_protocol"), "http");
        assert_eq!(label(sample, "response_code"), "200");
        assert_eq!(label(sample, "grpc_response_status"), "");
        assert_eq!(label(sample, "response_flags"), "-");
        assert_eq!(label(sample, "connection_security_policy"), "mutual_tls");
    }

    #[test]
    fn default_labels_are_unknown() {
        let m = Metrics::new(MetricsConfig::default());
        let labels = RequestLabels {
            reporter: Reporter::Source,
            request_protocol: RequestProtocol::Grpc,
            grpc_response_status: "14".into(),
            ..RequestLabels::default()
        };
        m.request(&labels, Duration::ZERO, 0, 0);
        let all = samples(&m.encode());
        let sample = find(&all, "istio_requests_total")[0];
        assert_eq!(label(sample, "reporter"), "source");
        assert_eq!(label(sample, "request_protocol"), "grpc");
        assert_eq!(label(sample, "grpc_response_status"), "14");
        assert_eq!(label(sample, "response_code"), "0");
        assert_eq!(label(sample, "connection_security_policy"), "unknown");
        for key in [
            "source_principal",
            "destination_principal",
            "destination_service",
        ] {
            assert_eq!(label(sample, key), "unknown", "{key}");
        }
    }

    #[test]
    fn tcp_labels_omit_response_fields_and_say_tcp() {
        let m = Metrics::new(MetricsConfig::default());
        m.tcp_opened(&http_labels());
        let all = samples(&m.encode());
        let sample = find(&all, "istio_tcp_connections_opened_total")[0];
        assert_eq!(sample.value, "1");
        assert_eq!(label(sample, "request_protocol"), "tcp");
        assert_eq!(sample.labels.len(), 23);
        assert!(
            !sample
                .labels
                .iter()
                .any(|(k, _)| k == "response_code" || k == "grpc_response_status")
        );
    }

    #[test]
    fn tcp_bytes_are_counted_at_close() {
        let m = Metrics::new(MetricsConfig::default());
        let labels = http_labels();
        m.tcp_opened(&labels);
        m.tcp_closed(&labels, 100, 40);
        m.tcp_closed(&labels, 1, 2);
        let all = samples(&m.encode());
        let value = |name| find(&all, name)[0].value.clone();
        assert_eq!(value("istio_tcp_connections_opened_total"), "1");
        assert_eq!(value("istio_tcp_connections_closed_total"), "2");
        assert_eq!(value("istio_tcp_sent_bytes_total"), "101");
        assert_eq!(value("istio_tcp_received_bytes_total"), "42");
    }

    #[test]
    fn durations_are_milliseconds_in_istios_buckets() {
        let m = Metrics::new(MetricsConfig::default());
        m.request(&http_labels(), Duration::from_micros(12_500), 0, 0);
        let all = samples(&m.encode());
        let buckets = find(&all, "istio_request_duration_milliseconds_bucket");
        let les: Vec<&str> = buckets.iter().map(|s| label(s, "le")).collect();
        assert_eq!(
            les,
            [
                "0.5",
                "1.0",
                "5.0",
                "10.0",
                "25.0",
                "50.0",
                "100.0",
                "250.0",
                "500.0",
                "1000.0",
                "2500.0",
                "5000.0",
                "10000.0",
                "30000.0",
                "60000.0",
                "300000.0",
                "600000.0",
                "1800000.0",
                "3600000.0",
                "+Inf",
            ]
        );
        let count_at = |le: &str| {
            buckets
                .iter()
                .find(|s| label(s, "le") == le)
                .map(|s| s.value.clone())
        };
        assert_eq!(count_at("10.0").as_deref(), Some("0"));
        assert_eq!(count_at("25.0").as_deref(), Some("1"));
        let sum = &find(&all, "istio_request_duration_milliseconds_sum")[0].value;
        assert_eq!(sum, "12.5");
    }

    #[test]
    fn byte_histograms_use_istios_buckets() {
        let m = Metrics::new(MetricsConfig::default());
        m.request(&http_labels(), Duration::ZERO, 300, 20_000_000);
        let all = samples(&m.encode());
        for name in ["istio_request_bytes_bucket", "istio_response_bytes_bucket"] {
            let les: Vec<&str> = find(&all, name).iter().map(|s| label(s, "le")).collect();
            assert_eq!(
                les,
                [
                    "1.0",
                    "10.0",
                    "100.0",
                    "1000.0",
                    "10000.0",
                    "100000.0",
                    "1000000.0",
                    "10000000.0",
                    "+Inf"
                ],
                "{name}"
            );
        }
        let request = find(&all, "istio_request_bytes_bucket");
        let at = |le: &str| {
            request
                .iter()
                .find(|s| label(s, "le") == le)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!((at("100.0"), at("1000.0")), ("0".into(), "1".into()));
        let response = find(&all, "istio_response_bytes_bucket");
        assert_eq!(
            response.iter().filter(|s| s.value == "1").count(),
            1,
            "+Inf only"
        );
    }

    #[test]
    fn label_sets_beyond_the_bound_overflow() {
        let m = Metrics::new(MetricsConfig { max_label_sets: 2 });
        let caller = |n: u32| RequestLabels {
            source_principal: Some(id(&format!("spiffe://example.org/ns/prod/sa/c{n}"))),
            source_workload: format!("c{n}"),
            ..http_labels()
        };
        m.request(&caller(1), Duration::ZERO, 0, 0);
        m.tcp_opened(&caller(2)); // TCP shares the bound.
        m.request(&caller(3), Duration::ZERO, 0, 0);
        m.request(&caller(4), Duration::ZERO, 0, 0);
        m.request(&caller(1), Duration::ZERO, 0, 0); // Known: no drop.

        let all = samples(&m.encode());
        let requests = find(&all, "istio_requests_total");
        assert_eq!(
            requests.len(),
            2,
            "c1 and one overflow series: {requests:?}"
        );
        let c1 = requests
            .iter()
            .find(|s| label(s, "source_workload") == "c1")
            .expect("c1 kept");
        assert_eq!(c1.value, "2");
        let overflow = requests
            .iter()
            .find(|s| label(s, "source_workload") == "overflow")
            .expect("overflow series");
        assert_eq!(overflow.value, "2", "c3 and c4 together");
        for key in [
            "source_principal",
            "source_app",
            "destination_workload",
            "destination_principal",
            "destination_service",
            "destination_service_name",
            "destination_canonical_revision",
        ] {
            assert_eq!(label(overflow, key), "overflow", "{key}");
        }
        for (key, kept) in [
            ("reporter", "destination"),
            ("source_workload_namespace", "prod"),
            ("destination_service_namespace", "prod"),
            ("response_code", "200"),
            ("connection_security_policy", "mutual_tls"),
        ] {
            assert_eq!(label(overflow, key), kept, "{key}");
        }
        let dropped = &find(&all, "mesh_metrics_label_sets_dropped_total")[0];
        assert_eq!(dropped.value, "2");
        let durations = find(&all, "istio_request_duration_milliseconds_count");
        assert_eq!(durations.len(), 2, "histograms use the same sets");

        // A new TCP set overflows too.
        m.tcp_closed(&caller(5), 0, 0);
        let all = samples(&m.encode());
        let closed = find(&all, "istio_tcp_connections_closed_total");
        assert_eq!(label(closed[0], "source_principal"), "overflow");
        assert_eq!(
            find(&all, "mesh_metrics_label_sets_dropped_total")[0].value,
            "3"
        );
    }

    #[test]
    fn repeated_recordings_reach_the_exposition_and_every_overflow_counts() {
        // The first recording of a set resolves its series; later ones use
        // the cached handles, which must record into the exposed metrics.
        // An overflowed set is never cached, so each recording counts.
        let m = Metrics::new(MetricsConfig { max_label_sets: 1 });
        let caller = |n: u32| RequestLabels {
            source_workload: format!("c{n}"),
            ..http_labels()
        };
        for bytes in [10, 20, 30] {
            m.request(&caller(1), Duration::from_millis(2), bytes, bytes * 2);
        }
        for _ in 0..3 {
            m.request(&caller(2), Duration::from_millis(2), 1, 1);
        }
        let all = samples(&m.encode());
        let of = |metric: &str, workload: &str| {
            find(&all, metric)
                .into_iter()
                .find(|s| label(s, "source_workload") == workload)
                .map(|s| s.value.clone())
        };
        assert_eq!(of("istio_requests_total", "c1").as_deref(), Some("3"));
        assert_eq!(of("istio_request_bytes_sum", "c1").as_deref(), Some("60.0"));
        assert_eq!(
            of("istio_response_bytes_sum", "c1").as_deref(),
            Some("120.0")
        );
        assert_eq!(
            of("istio_request_duration_milliseconds_count", "c1").as_deref(),
            Some("3")
        );
        assert_eq!(of("istio_requests_total", "c2"), None);
        assert_eq!(of("istio_requests_total", "overflow").as_deref(), Some("3"));
        assert_eq!(
            find(&all, "mesh_metrics_label_sets_dropped_total")[0].value,
            "3"
        );
    }

    #[test]
    fn a_connections_memo_records_into_the_shared_series_and_keeps_no_overflow() {
        let m = Metrics::new(MetricsConfig { max_label_sets: 2 });
        let memo = SeriesMemo::default();
        let ok = |code| RequestOutcome {
            protocol: RequestProtocol::Http,
            response_code: code,
            grpc_response_status: "",
        };
        let base = Arc::new(RequestLabels {
            source_workload: "c1".into(),
            ..http_labels()
        });
        for _ in 0..3 {
            m.request_memo(&memo, &base, ok(200), Duration::from_millis(1), 1, 1);
        }
        // The same labels in another `Arc` (another connection) land in
        // the same series.
        let same = Arc::new((*base).clone());
        m.request_memo(
            &SeriesMemo::default(),
            &same,
            ok(200),
            Duration::from_millis(1),
            1,
            1,
        );
        // A second outcome is the second admitted set; a third overflows
        // and, not kept by the memo, counts as dropped every time.
        m.request_memo(&memo, &base, ok(404), Duration::from_millis(1), 1, 1);
        for _ in 0..2 {
            m.request_memo(&memo, &base, ok(503), Duration::from_millis(1), 1, 1);
        }
        assert!(memo.get(&base, &ok(200)).is_some());
        assert!(memo.get(&base, &ok(404)).is_some());
        assert!(memo.get(&base, &ok(503)).is_none());
        assert!(memo.get(&same, &ok(200)).is_none(), "kept by address");
        let all = samples(&m.encode());
        let code = |c: &str| {
            find(&all, "istio_requests_total")
                .into_iter()
                .find(|s| label(s, "response_code") == c)
                .map(|s| s.value.clone())
        };
        assert_eq!(code("200").as_deref(), Some("4"));
        assert_eq!(code("404").as_deref(), Some("1"));
        // The overflowed recordings went to the overflow set, all of them.
        let overflow = find(&all, "istio_requests_total")
            .into_iter()
            .find(|s| label(s, "response_code") == "503")
            .unwrap();
        assert_eq!(label(overflow, "source_workload"), "overflow");
        assert_eq!(overflow.value, "2");
        assert_eq!(
            find(&all, "mesh_metrics_label_sets_dropped_total")[0].value,
            "2"
        );
    }

    #[test]
    fn request_with_records_the_series_of_the_labels_with_that_outcome() {
        let m = Metrics::new(MetricsConfig::default());
        let base = http_labels();
        let full = RequestLabels {
            request_protocol: RequestProtocol::Grpc,
            response_code: 200,
            grpc_response_status: "14".to_owned(),
            ..base.clone()
        };
        m.request(&full, Duration::from_millis(1), 1, 1);
        let outcome = RequestOutcome {
            protocol: RequestProtocol::Grpc,
            response_code: 200,
            grpc_response_status: "14",
        };
        m.request_with(&base, outcome, Duration::from_millis(1), 1, 1);
        m.request_with(&base, outcome, Duration::from_millis(1), 1, 1);
        // Another outcome under the same base is another series.
        let not_found = RequestOutcome {
            protocol: RequestProtocol::Http,
            response_code: 404,
            grpc_response_status: "",
        };
        m.request_with(&base, not_found, Duration::from_millis(1), 1, 1);

        let all = samples(&m.encode());
        let requests = find(&all, "istio_requests_total");
        assert_eq!(requests.len(), 2, "{requests:?}");
        let grpc = requests
            .iter()
            .find(|s| label(s, "grpc_response_status") == "14")
            .expect("the gRPC series");
        assert_eq!(grpc.value, "3");
        assert_eq!(label(grpc, "request_protocol"), "grpc");
        assert_eq!(label(grpc, "response_code"), "200");
        let missing = requests
            .iter()
            .find(|s| label(s, "response_code") == "404")
            .expect("the 404 series");
        assert_eq!(missing.value, "1");
        assert_eq!(label(missing, "request_protocol"), "http");
        assert_eq!(label(missing, "grpc_response_status"), "");
    }

    #[test]
    fn label_memo_rebuilds_only_when_its_key_changes() {
        let memo = LabelMemo::new();
        let built = std::cell::Cell::new(0);
        let get = |key: &'static str| {
            memo.get(
                |k: &&str| *k == key,
                || key,
                || {
                    built.set(built.get() + 1);
                    RequestLabels {
                        destination_workload: key.to_owned(),
                        ..RequestLabels::default()
                    }
                },
            )
        };
        let first = get("reviews");
        let again = get("reviews");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(built.get(), 1);
        let other = get("ratings");
        assert_eq!(other.destination_workload, "ratings");
        assert_eq!(built.get(), 2);
        assert_eq!(get("reviews").destination_workload, "reviews");
        assert_eq!(built.get(), 3);
    }

    #[test]
    fn authz_denials_name_policy_or_none() {
        let m = Metrics::new(MetricsConfig::default());
        m.authz_denied(Reporter::Destination, None, "no_allow_matched");
        m.authz_denied(Reporter::Destination, None, "no_allow_matched");
        m.authz_denied(
            Reporter::Source,
            Some("ns[prod]-policy[deny-web]-rule[0]"),
            "deny_matched",
        );
        let all = samples(&m.encode());
        let denials = find(&all, "mesh_authz_denials_total");
        assert_eq!(denials.len(), 2);
        let default = denials
            .iter()
            .find(|s| label(s, "policy") == "none")
            .unwrap();
        assert_eq!(default.value, "2");
        assert_eq!(label(default, "reason"), "no_allow_matched");
        assert_eq!(label(default, "reporter"), "destination");
        let named = denials
            .iter()
            .find(|s| label(s, "reason") == "deny_matched")
            .unwrap();
        assert_eq!(label(named, "policy"), "ns[prod]-policy[deny-web]-rule[0]");
        assert_eq!(label(named, "reporter"), "source");
    }

    #[test]
    fn tls_failures_and_certificate_expiry() {
        let m = Metrics::new(MetricsConfig::default());
        m.tls_handshake_failed(Direction::Outbound, "wrong_identity");
        m.set_certificate_expiry(120.0);
        m.set_certificate_expiry(59.5);
        let all = samples(&m.encode());
        let failures = find(&all, "mesh_tls_handshake_failures_total");
        assert_eq!(failures.len(), 1);
        assert_eq!(label(failures[0], "direction"), "outbound");
        assert_eq!(label(failures[0], "reason"), "wrong_identity");
        assert_eq!(failures[0].value, "1");
        assert_eq!(
            find(&all, "mesh_certificate_expiry_seconds")[0].value,
            "59.5"
        );
    }

    #[test]
    fn metrics_config_defaults_and_rejects_unknown_fields() {
        let config: MetricsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.max_label_sets, 2000);
        let config: MetricsConfig = serde_json::from_str(r#"{"max_label_sets":5}"#).unwrap();
        assert_eq!(config.max_label_sets, 5);
        assert!(serde_json::from_str::<MetricsConfig>(r#"{"max_labels":5}"#).is_err());
    }

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap().clone();
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'));
            text.lines()
                .map(|line| serde_json::from_str(line).expect("each line is JSON"))
                .collect()
        }
    }

    fn http_entry() -> AccessLogEntry {
        AccessLogEntry {
            time: UNIX_EPOCH + Duration::from_millis(1_709_210_096_789),
            source_principal: Some(id("spiffe://example.org/ns/prod/sa/web")),
            destination_principal: Some(id("spiffe://example.org/ns/prod/sa/api")),
            method: Some("GET".into()),
            path: Some("/v1/items".into()),
            authority: Some("api.prod:8080".into()),
            protocol: Some("HTTP/2".into()),
            status: Some(403),
            request_bytes: 12,
            response_bytes: 19,
            duration_ms: 7,
            upstream: Some("10.0.0.9:15006".parse().unwrap()),
            policy: Some("ns[prod]-policy[deny-web]-rule[0]".into()),
            reason: Some("denied by a matching DENY rule".into()),
            response_flags: "RBAC".into(),
            ..AccessLogEntry::new(
                EntryKind::Http,
                Reporter::Destination,
                AccessDecision::Deny,
                "10.0.0.5:40000".parse().unwrap(),
                "10.0.0.9:8080".parse().unwrap(),
            )
        }
    }

    #[test]
    fn access_log_line_parses_back_with_expected_fields() {
        let buffer = Buffer::default();
        let log = AccessLog::to_writer(Box::new(buffer.clone()));
        assert!(log.is_enabled());
        log.log(&http_entry());
        let lines = buffer.lines();
        assert_eq!(lines.len(), 1);
        let expected = serde_json::json!({
            "time": "2024-02-29T12:34:56.789Z",
            "kind": "http",
            "reporter": "destination",
            "source_principal": "spiffe://example.org/ns/prod/sa/web",
            "destination_principal": "spiffe://example.org/ns/prod/sa/api",
            "source_address": "10.0.0.5:40000",
            "destination_address": "10.0.0.9:8080",
            "method": "GET",
            "path": "/v1/items",
            "authority": "api.prod:8080",
            "protocol": "HTTP/2",
            "status": 403,
            "request_bytes": 12,
            "response_bytes": 19,
            "duration_ms": 7,
            "upstream": "10.0.0.9:15006",
            "decision": "deny",
            "policy": "ns[prod]-policy[deny-web]-rule[0]",
            "reason": "denied by a matching DENY rule",
            "response_flags": "RBAC",
        });
        assert_eq!(lines[0], expected);
    }

    #[test]
    fn tcp_entry_has_nulls_for_http_fields() {
        let buffer = Buffer::default();
        let log = AccessLog::to_writer(Box::new(buffer.clone()));
        let entry = AccessLogEntry::new(
            EntryKind::Tcp,
            Reporter::Source,
            AccessDecision::Allow,
            "10.0.0.5:40000".parse().unwrap(),
            "10.0.0.9:5432".parse().unwrap(),
        );
        log.log(&entry);
        log.log(&entry);
        let lines = buffer.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "tcp");
        assert_eq!(lines[0]["reporter"], "source");
        assert_eq!(lines[0]["decision"], "allow");
        assert_eq!(lines[0]["response_flags"], "-");
        for key in [
            "method",
            "path",
            "authority",
            "status",
            "policy",
            "upstream",
        ] {
            assert!(lines[0][key].is_null(), "{key}");
        }
    }

    #[test]
    fn access_log_drops_query_fragment_and_userinfo() {
        let buffer = Buffer::default();
        let log = AccessLog::to_writer(Box::new(buffer.clone()));
        for (path, logged) in [
            ("/callback?code=SECRET1&state=x", "/callback"),
            ("/a/b#access_token=SECRET2", "/a/b"),
            ("/p?", "/p"),
            ("?token=SECRET3", ""),
            ("/plain", "/plain"),
        ] {
            let entry = AccessLogEntry {
                path: Some(path.into()),
                authority: Some("user:SECRET4@api.prod:8080".into()),
                ..http_entry()
            };
            log.log(&entry);
            let line = buffer.lines().pop().unwrap();
            assert_eq!(line["path"], logged, "{path}");
            assert_eq!(line["authority"], "api.prod:8080");
        }
        let raw = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(!raw.contains("SECRET"), "{raw}");
    }

    #[test]
    fn access_log_counts_write_errors_without_panicking() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let log = AccessLog::to_writer(Box::new(Broken));
        log.log(&http_entry());
        log.log(&http_entry());
        assert_eq!(log.write_errors(), 2);
    }

    #[test]
    fn disabled_access_log_writes_nothing() {
        let log = AccessLog::disabled();
        assert!(!log.is_enabled());
        log.log(&http_entry());
        assert_eq!(log.write_errors(), 0);
        assert!(format!("{log:?}").contains("disabled"));
    }

    #[test]
    fn concurrent_lines_do_not_interleave() {
        let buffer = Buffer::default();
        let log = Arc::new(AccessLog::to_writer(Box::new(buffer.clone())));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        log.log(&http_entry());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(buffer.lines().len(), 200);
    }

    fn at_millis(ms: i64) -> SystemTime {
        let magnitude = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    #[test]
    fn rfc3339_known_timestamps() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (86_399_999, "1970-01-01T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (951_868_800_000, "2000-03-01T00:00:00.000Z"),
            (946_684_799_999, "1999-12-31T23:59:59.999Z"),
            (1_000_000_000_123, "2001-09-09T01:46:40.123Z"),
            (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
            (4_107_542_399_000, "2100-02-28T23:59:59.000Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-86_400_000, "1969-12-31T00:00:00.000Z"),
            (-2_208_988_800_000, "1900-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(format_rfc3339(at_millis(ms)), text, "{ms} ms");
        }
    }

    #[test]
    fn rfc3339_truncates_and_clamps() {
        let almost = UNIX_EPOCH + Duration::from_nanos(1_999_999_999);
        assert_eq!(format_rfc3339(almost), "1970-01-01T00:00:01.999Z");
        let before = UNIX_EPOCH - Duration::from_nanos(1);
        assert_eq!(format_rfc3339(before), "1969-12-31T23:59:59.999Z");
        let far = UNIX_EPOCH + Duration::from_secs(1_000_000_000_000);
        assert_eq!(format_rfc3339(far), "9999-12-31T23:59:59.999Z");
        let ancient = UNIX_EPOCH - Duration::from_secs(100_000_000_000);
        assert_eq!(format_rfc3339(ancient), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn metrics_and_access_log_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
        check::<AccessLog>();
    }
}
