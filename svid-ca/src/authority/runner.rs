//! Driving rotation from a Tokio runtime: [`TokioClock`], the rotation
//! task future and its [`RotationHealth`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::{CaError, CertificateAuthority};
use crate::Clock;

/// A wall clock that advances with Tokio's clock, so a test runtime with
/// paused time (`#[tokio::test(start_paused = true)]`) moves the authority
/// through its rotation schedule as fast as the test wants.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_system: SystemTime,
    base_instant: Instant,
}

impl TokioClock {
    /// A clock reading `start` now and advancing with Tokio's time. Must be
    /// created inside a Tokio runtime.
    pub fn starting_at(start: SystemTime) -> Self {
        TokioClock {
            base_system: start,
            base_instant: Instant::now(),
        }
    }

    /// A clock reading the system time now and advancing with Tokio's time.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base_system + self.base_instant.elapsed()
    }
}

/// What the rotation task has seen, published on a watch channel
/// ([`CertificateAuthority::subscribe_rotation_health`]) after every
/// scheduled rotation, so a readiness check or a metric can follow it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RotationHealth {
    /// Scheduled rotations that failed since start.
    pub failures: u64,
    /// Failures since the last success; 0 when the last rotation worked.
    pub consecutive_failures: u64,
    /// The most recent failure (kept after a later success, for the
    /// record; `consecutive_failures` says whether it is current).
    pub last_error: Option<Arc<CaError>>,
    /// When (by the authority's clock) a scheduled rotation last worked.
    pub last_success: Option<SystemTime>,
}

impl RotationHealth {
    /// Whether the last scheduled rotation worked (or none ran yet).
    pub fn is_healthy(&self) -> bool {
        self.consecutive_failures == 0
    }
}

/// Consecutive failures after which each further one is logged as an error.
const ESCALATE_AFTER: u64 = 3;

impl CertificateAuthority {
    /// A future that calls [`CertificateAuthority::rotate`] every `period`,
    /// forever. Spawn it on your runtime (the crate spawns nothing).
    ///
    /// A failed rotation (the store refuses the journal, say) changes
    /// nothing: the current keys keep signing and the bundle stays as it
    /// was. The failure is logged (a warning, an error from the third in a
    /// row on), recorded in [`CertificateAuthority::rotation_health`] and
    /// published to [`CertificateAuthority::subscribe_rotation_health`],
    /// and the rotation is retried next period; the task never ends on
    /// its own.
    pub async fn rotation_task(self: Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.scheduled_rotation();
        }
    }

    /// One scheduled rotation, with its outcome recorded.
    fn scheduled_rotation(&self) {
        match self.rotate() {
            Ok(_) => {
                let now = self.clock.now();
                self.rotation.send_modify(|h| {
                    if h.consecutive_failures > 0 {
                        tracing::info!(after = h.consecutive_failures, "CA rotation works again");
                    }
                    h.consecutive_failures = 0;
                    h.last_success = Some(now);
                });
            }
            Err(error) => {
                let error = Arc::new(error);
                self.rotation.send_modify(|h| {
                    h.failures += 1;
                    h.consecutive_failures += 1;
                    h.last_error = Some(error.clone());
                    if h.consecutive_failures >= ESCALATE_AFTER {
                        tracing::error!(
                            %error,
                            consecutive = h.consecutive_failures,
                            "CA rotation keeps failing; the current keys keep signing; retrying next period"
                        );
                    } else {
                        tracing::warn!(%error, "CA rotation failed; retrying next period");
                    }
                });
            }
        }
    }

    /// How many scheduled rotations have failed so far.
    pub fn rotation_failures(&self) -> u64 {
        self.rotation.borrow().failures
    }

    /// The rotation task's record so far.
    pub fn rotation_health(&self) -> RotationHealth {
        self.rotation.borrow().clone()
    }

    /// A receiver that sees every scheduled rotation's outcome.
    pub fn subscribe_rotation_health(&self) -> watch::Receiver<RotationHealth> {
        self.rotation.subscribe()
    }
}
