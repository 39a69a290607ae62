//! Choosing an endpoint of one service for each request.
//!
//! A [`Balancer`] holds one service's endpoint set (from discovery, through
//! [`Balancer::set_targets`]) and the statistics the proxy learns about each
//! endpoint. [`Balancer::pick`] chooses one endpoint by the *power of two
//! choices*: two distinct candidates are drawn at random and the one with the
//! lower load wins. The load is, by [`Strategy`]:
//!
//! - [`Strategy::PeakEwma`] (default, as linkerd2-proxy and tower do): the
//!   peak-EWMA latency estimate times `in_flight + 1`;
//! - [`Strategy::LeastRequest`] (as Envoy's `LEAST_REQUEST`): the number of
//!   requests in flight.
//!
//! The [`Pick`] returned is finished with an [`Outcome`]. Consecutive
//! failures eject the endpoint for a while (Envoy's outlier detection with
//! `consecutive_5xx` and `consecutive_gateway_failure` folded into one
//! counter); see [`BalanceConfig`] for the rules.
//!
//! # Peak-EWMA
//!
//! Each endpoint keeps an estimate `e` last updated at time `t`. At time
//! `now`, with `w = exp(-(now - t) / decay)`:
//!
//! - the *current* estimate is `e × w`: it decays towards zero while the
//!   endpoint is idle, so an endpoint that was slow once is tried again
//!   eventually instead of being starved;
//! - observing a latency `rtt` sets `e = rtt` if `rtt` exceeds the current
//!   estimate (the peak is taken at once), and otherwise
//!   `e = e × w + rtt × (1 - w)`; then `t = now`.
//!
//! A new endpoint starts at [`BalanceConfig::default_rtt`]. Only
//! [`Outcome::Success`] feeds latencies: a fast error must not make a broken
//! endpoint look fast.
//!
//! ```
//! use mesh_sidecar::balance::{BalanceConfig, Balancer, Outcome};
//! use mesh_sidecar::endpoint::Target;
//!
//! let balancer = Balancer::new(BalanceConfig::default());
//! balancer.set_targets(vec![Target {
//!     addr: "10.0.0.1:15006".parse()?,
//!     identity: "spiffe://example.org/ns/prod/sa/api".parse()?,
//! }]);
//! let pick = balancer.pick(&[]).expect("one endpoint, none ejected");
//! assert_eq!(pick.target().addr.port(), 15006);
//! pick.finish(Outcome::Success);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use spiffe_core::SpiffeId;
use tokio::time::Instant;

use crate::endpoint::Target;

/// How [`Balancer::pick`] weighs the two candidates it draws.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Peak-EWMA latency × (requests in flight + 1), as linkerd2-proxy.
    #[default]
    PeakEwma,
    /// Requests in flight, as Envoy's `LEAST_REQUEST`.
    LeastRequest,
}

/// The balancing and outlier-detection settings of one service.
///
/// In configuration files, durations are whole milliseconds in fields named
/// with an `_ms` suffix; missing fields take their defaults and unknown
/// fields are an error:
///
/// ```
/// use std::time::Duration;
/// use mesh_sidecar::balance::{BalanceConfig, Strategy};
///
/// let config: BalanceConfig = serde_json::from_str(
///     r#"{ "strategy": "least_request", "base_ejection_ms": 10000 }"#,
/// )?;
/// assert_eq!(config.strategy, Strategy::LeastRequest);
/// assert_eq!(config.base_ejection, Duration::from_secs(10));
/// assert_eq!(config.consecutive_failures, 5);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// # Ejection
///
/// When an endpoint's consecutive failures reach `consecutive_failures`, it
/// is ejected for `base_ejection × n` (where `n` counts its ejections,
/// this one included), capped at `max_ejection`, and its failure count
/// starts again from zero. As Envoy does, an ejection that would leave more
/// than `max_ejected_percent` of the endpoints ejected does not happen:
/// with `N` endpoints at most `⌊N × max_ejected_percent / 100⌋` are out at
/// once, so with the default 50 % a lone endpoint is never ejected, and one
/// of two may be. An endpoint refused ejection keeps its count and is
/// ejected at its next failure if room has been made by then. Zero
/// `consecutive_failures` disables ejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BalanceConfig {
    /// How the two candidates are compared.
    pub strategy: Strategy,
    /// Failures in a row that eject an endpoint (0 disables ejection).
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times this.
    #[serde(rename = "base_ejection_ms", with = "millis")]
    pub base_ejection: Duration,
    /// The longest an ejection lasts.
    #[serde(rename = "max_ejection_ms", with = "millis")]
    pub max_ejection: Duration,
    /// The largest share of endpoints, in percent, ejected at once (values
    /// above 100 count as 100).
    pub max_ejected_percent: u8,
    /// The peak-EWMA decay window: after one `decay` of idleness an
    /// estimate has fallen to 1/e of itself.
    #[serde(rename = "decay_ms", with = "millis")]
    pub decay: Duration,
    /// The estimate a new endpoint starts with.
    #[serde(rename = "default_rtt_ms", with = "millis")]
    pub default_rtt: Duration,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::PeakEwma,
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }
}

/// Durations as whole milliseconds, for configuration files.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// How a request sent to a [`Pick`]ed endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response that is not a server error: resets the failure count and
    /// feeds the latency into the estimate.
    Success,
    /// A server error (5xx) or a reset stream: counts as a failure.
    Failure,
    /// No connection could be made (refused, timed out, handshake failed):
    /// counts as a failure.
    ConnectFailure,
}

/// One endpoint as the `/clusters` admin page shows it.
///
/// Durations serialise as milliseconds, in fields named with `_ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// The endpoint's address.
    pub addr: SocketAddr,
    /// The identity that must answer there.
    pub identity: SpiffeId,
    /// Requests picked and not yet finished or dropped.
    pub in_flight: u32,
    /// The current peak-EWMA latency estimate (decayed to now).
    #[serde(rename = "ewma_ms", serialize_with = "fractional_millis")]
    pub ewma: Duration,
    /// Failures since the last success or ejection.
    pub consecutive_failures: u32,
    /// How much longer the endpoint stays ejected; `None` when it is not.
    #[serde(rename = "ejected_for_ms", serialize_with = "optional_millis")]
    pub ejected_for: Option<Duration>,
    /// How many times the endpoint has been ejected.
    pub times_ejected: u32,
}

fn fractional_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Through nanoseconds, so whole milliseconds print exactly.
    s.serialize_f64(d.as_nanos() as f64 / 1_000_000.0)
}

fn optional_millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => millis::serialize(d, s),
        None => s.serialize_none(),
    }
}

/// A peak-EWMA latency estimate, in seconds (see the module docs).
#[derive(Debug, Clone, Copy)]
struct PeakEwma {
    estimate: f64,
    updated: Instant,
}

impl PeakEwma {
    fn new(initial: Duration, now: Instant) -> Self {
        Self {
            estimate: initial.as_secs_f64(),
            updated: now,
        }
    }

    /// `exp(-(now - updated) / decay)`; 0 with a zero window.
    fn weight(&self, now: Instant, decay: Duration) -> f64 {
        let decay = decay.as_secs_f64();
        if decay <= 0.0 {
            return 0.0;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (-elapsed / decay).exp()
    }

    /// The estimate decayed to `now`, in seconds.
    fn current(&self, now: Instant, decay: Duration) -> f64 {
        self.estimate * self.weight(now, decay)
    }

    fn observe(&mut self, rtt: Duration, now: Instant, decay: Duration) {
        let rtt = rtt.as_secs_f64();
        let w = self.weight(now, decay);
        if rtt > self.estimate * w {
            self.estimate = rtt;
        } else {
            self.estimate = self.estimate * w + rtt * (1.0 - w);
        }
        self.updated = now;
    }
}

/// One endpoint and what the balancer learnt about it.
#[derive(Debug)]
struct Endpoint {
    /// Unique for the balancer's life: a [`Pick`] of an endpoint that was
    /// removed (and perhaps added again) finds nothing to update.
    id: u64,
    target: Target,
    in_flight: u32,
    ewma: PeakEwma,
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
    times_ejected: u32,
}

impl Endpoint {
    fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| until > now)
    }
}

#[derive(Debug)]
struct State {
    endpoints: Vec<Endpoint>,
    rng: fastrand::Rng,
    next_id: u64,
}

#[derive(Debug)]
struct Shared {
    config: BalanceConfig,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every await-free step, so a panic
        // elsewhere while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn load(&self, endpoint: &Endpoint, now: Instant) -> f64 {
        match self.config.strategy {
            Strategy::PeakEwma => {
                endpoint.ewma.current(now, self.config.decay) * f64::from(endpoint.in_flight + 1)
            }
            Strategy::LeastRequest => f64::from(endpoint.in_flight),
        }
    }

    /// Ends a pick: releases its in-flight count and applies its outcome.
    fn complete(&self, id: u64, started: Instant, outcome: Option<Outcome>) {
        let now = Instant::now();
        let mut state = self.lock();
        let endpoints = &mut state.endpoints;
        let Some(index) = endpoints.iter().position(|e| e.id == id) else {
            return; // Removed by `set_targets` meanwhile.
        };
        let config = &self.config;
        let endpoint = &mut endpoints[index];
        endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        match outcome {
            None => {}
            Some(Outcome::Success) => {
                endpoint.consecutive_failures = 0;
                let rtt = now.saturating_duration_since(started);
                endpoint.ewma.observe(rtt, now, config.decay);
            }
            Some(Outcome::Failure | Outcome::ConnectFailure) => {
                if endpoint.is_ejected(now) {
                    // Requests picked before the ejection finishing late say
                    // nothing new.
                    return;
                }
                endpoint.consecutive_failures = endpoint.consecutive_failures.saturating_add(1);
                let threshold = config.consecutive_failures;
                if threshold == 0 || endpoint.consecutive_failures < threshold {
                    return;
                }
                let ejected = endpoints.iter().filter(|e| e.is_ejected(now)).count();
                let cap = u128::from(config.max_ejected_percent.min(100));
                // (ejected + 1) / N <= cap / 100, in integers.
                let allowed = (ejected as u128 + 1) * 100 <= endpoints.len() as u128 * cap;
                if !allowed {
                    return;
                }
                let endpoint = &mut endpoints[index];
                endpoint.times_ejected = endpoint.times_ejected.saturating_add(1);
                endpoint.consecutive_failures = 0;
                let length = config
                    .base_ejection
                    .saturating_mul(endpoint.times_ejected)
                    .min(config.max_ejection);
                endpoint.ejected_until = Some(now + length);
                tracing::info!(
                    addr = %endpoint.target.addr,
                    identity = %endpoint.target.identity,
                    seconds = length.as_secs_f64(),
                    "endpoint ejected after consecutive failures"
                );
            }
        }
    }
}

/// One service's endpoints and the choice among them.
///
/// `Balancer` is `Send + Sync`; clones share the same endpoints and
/// statistics (it is one `Arc` inside). The internal lock is held only for
/// short, allocation-light steps.
#[derive(Debug, Clone)]
pub struct Balancer {
    shared: Arc<Shared>,
}

impl Balancer {
    /// A balancer with no endpoints yet, seeded from the operating system.
    pub fn new(config: BalanceConfig) -> Self {
        Self::with_rng(config, fastrand::Rng::new())
    }

    /// A balancer whose random choices repeat for a given seed, for tests
    /// and simulations.
    pub fn with_seed(config: BalanceConfig, seed: u64) -> Self {
        Self::with_rng(config, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(config: BalanceConfig, rng: fastrand::Rng) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State {
                    endpoints: Vec::new(),
                    rng,
                    next_id: 0,
                }),
            }),
        }
    }

    /// The settings this balancer was built with.
    pub fn config(&self) -> &BalanceConfig {
        &self.shared.config
    }

    /// Replaces the endpoint set, in the order given, without duplicates.
    ///
    /// Targets already present (same address and identity) keep their
    /// statistics, ejection and in-flight count; the others start afresh.
    /// Removed targets are forgotten: finishing a [`Pick`] of one later
    /// changes nothing.
    pub fn set_targets(&self, targets: Vec<Target>) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let mut old: HashMap<Target, Endpoint> = state
            .endpoints
            .drain(..)
            .map(|e| (e.target.clone(), e))
            .collect();
        let mut endpoints = Vec::with_capacity(targets.len());
        for target in targets {
            if endpoints.iter().any(|e: &Endpoint| e.target == target) {
                continue;
            }
            let endpoint = match old.remove(&target) {
                Some(endpoint) => endpoint,
                None => {
                    let id = state.next_id;
                    state.next_id += 1;
                    Endpoint {
                        id,
                        target,
                        in_flight: 0,
                        ewma: PeakEwma::new(self.shared.config.default_rtt, now),
                        consecutive_failures: 0,
                        ejected_until: None,
                        times_ejected: 0,
                    }
                }
            };
            endpoints.push(endpoint);
        }
        state.endpoints = endpoints;
    }

    /// Chooses an endpoint for one request, or `None` if every endpoint is
    /// ejected or in `exclude` (or there are none).
    ///
    /// `exclude` holds addresses not to use, such as those a retry already
    /// tried. Among the remaining endpoints, one is taken as is and two or
    /// more are compared two at random (see the module docs).
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<Pick> {
        let now = Instant::now();
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let eligible = |e: &Endpoint| !e.is_ejected(now) && !exclude.contains(&e.target.addr);
        // The index of the k-th eligible endpoint: counted, not collected
        // (a pick per request; endpoint lists are short).
        let nth = |endpoints: &[Endpoint], k: usize| {
            endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| eligible(e))
                .nth(k)
                .map(|(i, _)| i)
        };
        let chosen = match state.endpoints.iter().filter(|e| eligible(e)).count() {
            0 => return None,
            1 => nth(&state.endpoints, 0)?,
            n => {
                let a = state.rng.usize(..n);
                let mut b = state.rng.usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (nth(&state.endpoints, a)?, nth(&state.endpoints, b)?);
                let load_a = self.shared.load(&state.endpoints[a], now);
                let load_b = self.shared.load(&state.endpoints[b], now);
                if load_b < load_a { b } else { a }
            }
        };
        let endpoint = &mut state.endpoints[chosen];
        endpoint.in_flight = endpoint.in_flight.saturating_add(1);
        Some(Pick {
            shared: Arc::clone(&self.shared),
            id: endpoint.id,
            target: endpoint.target.clone(),
            started: now,
            finished: false,
        })
    }

    /// Whether `target` is one of the endpoints.
    pub fn contains(&self, target: &Target) -> bool {
        self.shared
            .lock()
            .endpoints
            .iter()
            .any(|e| e.target == *target)
    }

    /// Whether an endpoint listens at `addr`.
    pub fn serves(&self, addr: SocketAddr) -> bool {
        self.shared
            .lock()
            .endpoints
            .iter()
            .any(|e| e.target.addr == addr)
    }

    /// Every endpoint with its statistics, in the order of the last
    /// [`set_targets`](Self::set_targets).
    pub fn status(&self) -> Vec<EndpointStatus> {
        let now = Instant::now();
        let state = self.shared.lock();
        let decay = self.shared.config.decay;
        state
            .endpoints
            .iter()
            .map(|e| EndpointStatus {
                addr: e.target.addr,
                identity: e.target.identity.clone(),
                in_flight: e.in_flight,
                ewma: Duration::try_from_secs_f64(e.ewma.current(now, decay))
                    .unwrap_or(Duration::MAX),
                consecutive_failures: e.consecutive_failures,
                ejected_for: e
                    .ejected_until
                    .filter(|until| *until > now)
                    .map(|until| until - now),
                times_ejected: e.times_ejected,
            })
            .collect()
    }
}

/// An endpoint chosen for one request.
///
/// Finish it with the request's [`Outcome`]; dropping it unfinished (the
/// request was cancelled) only releases its in-flight count.
pub struct Pick {
    shared: Arc<Shared>,
    id: u64,
    target: Target,
    started: Instant,
    finished: bool,
}

impl std::fmt::Debug for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pick")
            .field("target", &self.target)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Pick {
    /// The endpoint to send the request to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Records how the request ended; the latency is the time since
    /// [`Balancer::pick`].
    pub fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.shared.complete(self.id, self.started, Some(outcome));
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.complete(self.id, self.started, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(n: u8) -> Target {
        Target {
            addr: SocketAddr::from(([10, 0, 0, n], 15006)),
            identity: format!("spiffe://example.org/ns/prod/sa/svc{n}")
                .parse()
                .expect("a valid SPIFFE ID"),
        }
    }

    fn targets(ns: &[u8]) -> Vec<Target> {
        ns.iter().map(|n| target(*n)).collect()
    }

    fn three_failures() -> BalanceConfig {
        BalanceConfig {
            consecutive_failures: 3,
            ..BalanceConfig::default()
        }
    }

    fn balancer(config: BalanceConfig, ns: &[u8]) -> Balancer {
        let b = Balancer::with_seed(config, 7);
        b.set_targets(targets(ns));
        b
    }

    /// Picks endpoint `n` by excluding every other address of the set.
    fn pick_only(b: &Balancer, n: u8) -> Option<Pick> {
        let others: Vec<SocketAddr> = b
            .status()
            .iter()
            .map(|s| s.addr)
            .filter(|a| *a != target(n).addr)
            .collect();
        b.pick(&others)
    }

    fn fail(b: &Balancer, n: u8, times: u32, outcome: Outcome) {
        for _ in 0..times {
            pick_only(b, n).expect("endpoint pickable").finish(outcome);
        }
    }

    fn status(b: &Balancer, n: u8) -> EndpointStatus {
        b.status()
            .into_iter()
            .find(|s| s.addr == target(n).addr)
            .expect("endpoint in the set")
    }

    /// The last octet of a test target's address.
    fn number(t: &Target) -> u8 {
        match t.addr.ip() {
            std::net::IpAddr::V4(ip) => ip.octets()[3],
            std::net::IpAddr::V6(_) => unreachable!("test targets are IPv4"),
        }
    }

    fn picked(b: &Balancer, exclude: &[SocketAddr]) -> Option<u8> {
        b.pick(exclude).map(|p| number(p.target()))
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_prefers_lower_latency() {
        let b = balancer(BalanceConfig::default(), &[1, 2, 3, 4]);
        let latency = |n: u8| Duration::from_millis([5, 20, 50, 200][usize::from(n - 1)]);
        let mut counts = [0u32; 4];
        for _ in 0..2000 {
            let pick = b.pick(&[]).expect("no endpoint ejected");
            let n = number(pick.target());
            counts[usize::from(n - 1)] += 1;
            tokio::time::advance(latency(n)).await;
            pick.finish(Outcome::Success);
        }
        assert!(
            counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[3],
            "faster endpoints get more picks: {counts:?}"
        );
        assert!(
            counts[0] > 800,
            "the fastest wins every pair it is in: {counts:?}"
        );
        assert!(counts[3] < 100, "the slowest loses every pair: {counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_endpoint_is_retried_once_its_estimate_decays() {
        // Starting at 10 ms, endpoint 1's estimate stays at exactly 10 ms
        // (from 30 ms it would take about one decay window to get there).
        let config = BalanceConfig {
            default_rtt: Duration::from_millis(10),
            ..BalanceConfig::default()
        };
        let b = balancer(config, &[1, 2]);
        for (n, ms) in [(1, 10), (2, 1000)] {
            let pick = pick_only(&b, n).unwrap();
            tokio::time::advance(Duration::from_millis(ms)).await;
            pick.finish(Outcome::Success);
        }
        // Endpoint 2's 1 s falls below endpoint 1's 10 ms after
        // 10 s × ln(100) ≈ 46.05 s of idleness.
        let start = Instant::now();
        loop {
            let pick = b.pick(&[]).unwrap();
            if number(pick.target()) == 2 {
                break;
            }
            tokio::time::advance(Duration::from_millis(10)).await;
            pick.finish(Outcome::Success);
            assert!(start.elapsed() < Duration::from_secs(47), "never retried");
        }
        assert!(
            start.elapsed() > Duration::from_secs(46),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_weighs_requests_in_flight() {
        let b = balancer(BalanceConfig::default(), &[1, 2]);
        let _held = [pick_only(&b, 1), pick_only(&b, 1)];
        for _ in 0..20 {
            assert_eq!(picked(&b, &[]), Some(2), "same estimate, fewer in flight");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn least_request_prefers_fewer_in_flight() {
        let config = BalanceConfig {
            strategy: Strategy::LeastRequest,
            ..BalanceConfig::default()
        };
        let b = balancer(config, &[1, 2]);
        // Endpoint 1 is the faster, which least-request must ignore.
        let fast = pick_only(&b, 1).unwrap();
        tokio::time::advance(Duration::from_millis(1)).await;
        fast.finish(Outcome::Success);
        let mut held: Vec<Pick> = (0..3).map(|_| pick_only(&b, 1).unwrap()).collect();
        for expected_in_flight in 1..=3 {
            let pick = b.pick(&[]).unwrap();
            assert_eq!(pick.target(), &target(2));
            held.push(pick);
            assert_eq!(status(&b, 2).in_flight, expected_in_flight);
        }
        assert_eq!(status(&b, 1).in_flight, 3);
        drop(held);
        assert_eq!(status(&b, 1).in_flight, 0);
        assert_eq!(status(&b, 2).in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn excluded_addresses_are_never_picked() {
        let b = balancer(BalanceConfig::default(), &[1, 2, 3]);
        for _ in 0..50 {
            let n = picked(&b, &[target(1).addr, target(3).addr]);
            assert_eq!(n, Some(2));
            let n = picked(&b, &[target(2).addr]).unwrap();
            assert!(n == 1 || n == 3, "picked excluded {n}");
        }
        let all = [target(1).addr, target(2).addr, target(3).addr];
        assert!(b.pick(&all).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn empty_set_gives_none() {
        let b = Balancer::with_seed(BalanceConfig::default(), 1);
        assert!(b.pick(&[]).is_none());
        b.set_targets(targets(&[1]));
        assert!(b.pick(&[]).is_some());
        b.set_targets(Vec::new());
        assert!(b.pick(&[]).is_none());
        assert!(b.status().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn ejects_after_consecutive_failures() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 2, Outcome::Failure);
        assert_eq!(status(&b, 1).consecutive_failures, 2);
        assert_eq!(status(&b, 1).ejected_for, None);
        fail(&b, 1, 1, Outcome::ConnectFailure);
        let s = status(&b, 1);
        assert_eq!(s.ejected_for, Some(Duration::from_secs(30)));
        assert_eq!(s.times_ejected, 1);
        assert_eq!(s.consecutive_failures, 0, "the count restarts");
        assert!(
            pick_only(&b, 1).is_none(),
            "an ejected endpoint is not picked"
        );
        for _ in 0..20 {
            assert_eq!(picked(&b, &[]), Some(2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_failure_count() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 2, Outcome::Failure);
        pick_only(&b, 1).unwrap().finish(Outcome::Success);
        assert_eq!(status(&b, 1).consecutive_failures, 0);
        fail(&b, 1, 2, Outcome::ConnectFailure);
        let s = status(&b, 1);
        assert_eq!(s.consecutive_failures, 2);
        assert_eq!(s.ejected_for, None);
        assert_eq!(s.times_ejected, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_endpoint_returns_when_time_passes() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 3, Outcome::Failure);
        tokio::time::advance(Duration::from_millis(29_999)).await;
        assert!(
            pick_only(&b, 1).is_none(),
            "still ejected 1 ms before the end"
        );
        assert_eq!(status(&b, 1).ejected_for, Some(Duration::from_millis(1)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(pick_only(&b, 1).is_some(), "back when the time has passed");
        assert_eq!(status(&b, 1).ejected_for, None);
        assert_eq!(status(&b, 1).times_ejected, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_each_ejection() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 3, Outcome::Failure);
        assert_eq!(status(&b, 1).ejected_for, Some(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        fail(&b, 1, 3, Outcome::Failure);
        let s = status(&b, 1);
        assert_eq!(s.times_ejected, 2);
        assert_eq!(
            s.ejected_for,
            Some(Duration::from_secs(60)),
            "twice the first"
        );
        tokio::time::advance(Duration::from_millis(59_999)).await;
        assert!(pick_only(&b, 1).is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(pick_only(&b, 1).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_is_capped() {
        let config = BalanceConfig {
            max_ejection: Duration::from_secs(50),
            ..three_failures()
        };
        let b = balancer(config, &[1, 2]);
        let mut lengths = Vec::new();
        for _ in 0..3 {
            fail(&b, 1, 3, Outcome::Failure);
            let length = status(&b, 1).ejected_for.expect("ejected");
            lengths.push(length.as_secs());
            tokio::time::advance(length).await;
        }
        assert_eq!(lengths, [30, 50, 50]);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_of_an_ejected_endpoint_do_not_extend_it() {
        let b = balancer(three_failures(), &[1, 2]);
        let late: Vec<Pick> = (0..3).map(|_| pick_only(&b, 1).unwrap()).collect();
        fail(&b, 1, 3, Outcome::Failure);
        for pick in late {
            pick.finish(Outcome::Failure);
        }
        let s = status(&b, 1);
        assert_eq!((s.times_ejected, s.consecutive_failures), (1, 0));
        assert_eq!(s.ejected_for, Some(Duration::from_secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejected_share_caps_ejections() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 3, Outcome::Failure);
        assert!(status(&b, 1).ejected_for.is_some());
        fail(&b, 2, 5, Outcome::Failure);
        let s = status(&b, 2);
        assert_eq!(s.ejected_for, None, "a second ejection would exceed 50 %");
        assert_eq!(s.consecutive_failures, 5);
        assert_eq!(picked(&b, &[]), Some(2), "the last endpoint still serves");
    }

    #[tokio::test(start_paused = true)]
    async fn refused_ejection_happens_once_room_is_made() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 3, Outcome::Failure);
        fail(&b, 2, 3, Outcome::Failure);
        assert_eq!(status(&b, 2).ejected_for, None);
        tokio::time::advance(Duration::from_secs(30)).await;
        fail(&b, 2, 1, Outcome::Failure);
        assert_eq!(status(&b, 2).ejected_for, Some(Duration::from_secs(30)));
        assert_eq!(status(&b, 1).ejected_for, None);
    }

    #[tokio::test(start_paused = true)]
    async fn lone_endpoint_is_never_ejected_by_default() {
        let b = balancer(three_failures(), &[1]);
        fail(&b, 1, 10, Outcome::ConnectFailure);
        assert_eq!(status(&b, 1).ejected_for, None);
        assert!(b.pick(&[]).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn full_share_may_eject_everything() {
        let config = BalanceConfig {
            max_ejected_percent: 100,
            ..three_failures()
        };
        let b = balancer(config, &[1]);
        fail(&b, 1, 3, Outcome::Failure);
        assert!(b.pick(&[]).is_none(), "every target ejected");
    }

    #[tokio::test(start_paused = true)]
    async fn three_endpoints_at_half_allow_one_ejection() {
        let b = balancer(three_failures(), &[1, 2, 3]);
        for n in [1, 2, 3] {
            fail(&b, n, 3, Outcome::Failure);
        }
        let ejected = b
            .status()
            .iter()
            .filter(|s| s.ejected_for.is_some())
            .count();
        assert_eq!(ejected, 1, "floor(3 × 50 %) = 1");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_threshold_disables_ejection() {
        let config = BalanceConfig {
            consecutive_failures: 0,
            max_ejected_percent: 100,
            ..BalanceConfig::default()
        };
        let b = balancer(config, &[1, 2]);
        fail(&b, 1, 20, Outcome::Failure);
        assert_eq!(status(&b, 1).ejected_for, None);
    }

    #[tokio::test(start_paused = true)]
    async fn set_targets_keeps_stats_of_remaining_targets() {
        let b = balancer(three_failures(), &[1, 2]);
        let slow = pick_only(&b, 1).unwrap();
        tokio::time::advance(Duration::from_millis(400)).await;
        slow.finish(Outcome::Success);
        fail(&b, 1, 2, Outcome::Failure);
        let held = pick_only(&b, 1).unwrap();
        fail(&b, 2, 1, Outcome::Failure);

        b.set_targets(targets(&[3, 1]));
        let all = b.status();
        let addrs: Vec<SocketAddr> = all.iter().map(|s| s.addr).collect();
        assert_eq!(addrs, [target(3).addr, target(1).addr], "order as given");
        let kept = &all[1];
        assert_eq!(kept.consecutive_failures, 2);
        assert_eq!(kept.in_flight, 1);
        assert_eq!(kept.ewma, Duration::from_millis(400));
        let new = &all[0];
        assert_eq!(new.ewma, Duration::from_millis(30), "default estimate");
        assert_eq!((new.in_flight, new.consecutive_failures), (0, 0));

        drop(held);
        assert_eq!(b.status()[1].in_flight, 0);
        b.set_targets(targets(&[1, 2]));
        let back = status(&b, 2);
        assert_eq!(
            back.consecutive_failures, 0,
            "a returning target starts afresh"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn set_targets_drops_duplicates() {
        let b = balancer(BalanceConfig::default(), &[]);
        b.set_targets(targets(&[1, 1, 2, 1]));
        assert_eq!(b.status().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn same_address_new_identity_is_a_new_target() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 2, Outcome::Failure);
        let mut moved = target(1);
        moved.identity = "spiffe://example.org/ns/prod/sa/other".parse().unwrap();
        b.set_targets(vec![moved.clone(), target(2)]);
        let s = status(&b, 1);
        assert_eq!(s.identity, moved.identity);
        assert_eq!(s.consecutive_failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn finishing_a_pick_of_a_removed_target_changes_nothing() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 2, Outcome::Failure);
        let stale = pick_only(&b, 1).unwrap();
        b.set_targets(targets(&[2]));
        b.set_targets(targets(&[1, 2]));
        assert_eq!(status(&b, 1).in_flight, 0);
        stale.finish(Outcome::Failure);
        let s = status(&b, 1);
        assert_eq!((s.in_flight, s.consecutive_failures), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_pick_releases_in_flight_only() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 2, Outcome::Failure);
        let pick = pick_only(&b, 1).unwrap();
        assert_eq!(status(&b, 1).in_flight, 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(pick);
        let s = status(&b, 1);
        assert_eq!(s.in_flight, 0);
        assert_eq!(s.consecutive_failures, 2);
        assert!(s.ewma < Duration::from_millis(30), "no latency was fed");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_do_not_feed_latency() {
        let b = balancer(three_failures(), &[1, 2]);
        let pick = pick_only(&b, 1).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        pick.finish(Outcome::Failure);
        assert!(status(&b, 1).ewma < Duration::from_millis(30));
    }

    #[test]
    fn peak_ewma_takes_peaks_and_decays() {
        let t0 = Instant::now();
        let decay = Duration::from_secs(10);
        let mut e = PeakEwma::new(Duration::from_millis(30), t0);
        e.observe(Duration::from_millis(100), t0, decay);
        assert_eq!(e.current(t0, decay), 0.1, "a peak is taken at once");

        // One decay window later the estimate is 100 ms / e.
        let t1 = t0 + decay;
        let w = (-1.0f64).exp();
        assert!((e.current(t1, decay) - 0.1 * w).abs() < 1e-12);
        // 10 ms is below the decayed 36.8 ms: weighted, not taken.
        e.observe(Duration::from_millis(10), t1, decay);
        let expected = 0.1 * w + 0.01 * (1.0 - w);
        assert!((e.current(t1, decay) - expected).abs() < 1e-12, "{e:?}");
        // 50 ms is above the current 43.1 ms: taken at once.
        e.observe(Duration::from_millis(50), t1, decay);
        assert_eq!(e.current(t1, decay), 0.05);
    }

    #[test]
    fn peak_ewma_with_zero_window_keeps_the_last_sample() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_millis(30), t0);
        e.observe(Duration::from_millis(5), t0, Duration::ZERO);
        assert_eq!(e.estimate, 0.005);
    }

    #[test]
    fn config_defaults_and_millisecond_fields() {
        let config: BalanceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, BalanceConfig::default());
        assert_eq!(config.strategy, Strategy::PeakEwma);
        assert_eq!(config.consecutive_failures, 5);
        assert_eq!(config.base_ejection, Duration::from_secs(30));
        assert_eq!(config.max_ejection, Duration::from_secs(300));
        assert_eq!(config.max_ejected_percent, 50);
        assert_eq!(config.decay, Duration::from_secs(10));
        assert_eq!(config.default_rtt, Duration::from_millis(30));

        let json = r#"{"strategy":"least_request","consecutive_failures":2,
            "base_ejection_ms":1500,"max_ejection_ms":6000,"max_ejected_percent":100,
            "decay_ms":250,"default_rtt_ms":7}"#;
        let config: BalanceConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.strategy, Strategy::LeastRequest);
        assert_eq!(config.base_ejection, Duration::from_millis(1500));
        assert_eq!(config.decay, Duration::from_millis(250));
        assert_eq!(config.default_rtt, Duration::from_millis(7));
        let back: BalanceConfig =
            serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(back, config);

        for bad in [
            r#"{"base_ejection":30}"#,
            r#"{"strategy":"round_robin"}"#,
            r#"{"strategy":"PeakEwma"}"#,
            r#"{"decay_ms":-1}"#,
        ] {
            assert!(serde_json::from_str::<BalanceConfig>(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn status_serialises_with_millisecond_fields() {
        let b = balancer(three_failures(), &[1, 2]);
        fail(&b, 1, 3, Outcome::Failure);
        let json = serde_json::to_value(b.status()).unwrap();
        assert_eq!(json[0]["addr"], "10.0.0.1:15006");
        assert_eq!(json[0]["identity"], "spiffe://example.org/ns/prod/sa/svc1");
        assert_eq!(json[0]["ejected_for_ms"], 30_000);
        assert_eq!(json[0]["ewma_ms"], 30.0);
        assert_eq!(json[0]["times_ejected"], 1);
        assert!(json[1]["ejected_for_ms"].is_null());
    }

    #[test]
    fn balancer_and_pick_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Balancer>();
        check::<Pick>();
    }
}
