//! Driving rotation from a Tokio runtime: [`TokioClock`] and the rotation
//! task future.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior};

use super::CertificateAuthority;
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

impl CertificateAuthority {
    /// A future that calls [`CertificateAuthority::rotate`] every `period`,
    /// forever. Spawn it on your runtime (the crate spawns nothing); a
    /// failed rotation is logged, counted in
    /// [`CertificateAuthority::rotation_failures`], and retried next period.
    pub async fn rotation_task(self: Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.rotate() {
                self.rotation_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "CA rotation failed; retrying next period");
            }
        }
    }

    /// How many scheduled rotations have failed so far.
    pub fn rotation_failures(&self) -> u64 {
        self.rotation_failures.load(Ordering::Relaxed)
    }
}
