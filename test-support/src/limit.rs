//! Per-test time limits on real time, for tests that wait on a peer, a
//! stream or a child process: a hung test fails instead of holding CI.
//!
//! The limit is kept by a watchdog thread, not by the async runtime, so it
//! holds under paused tokio time and when the test is stuck in blocking
//! code. [`within`] makes a late async body panic in its own test; a test
//! that cannot be interrupted (stuck in a blocking call, or holding only a
//! [`TimeLimit`]) makes the watchdog end the test process with a failure
//! status after naming the test on stderr.

use std::future::Future;
use std::io::Write;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How long [`within`] waits, after its limit, for the body to be polled
/// and panic before the watchdog ends the process.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    done: bool,
    expired: bool,
    waker: Option<Waker>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running time limit; dropping it (the test finished) stops the
/// watchdog.
#[must_use = "the limit ends when the guard is dropped"]
pub struct TimeLimit {
    shared: Shared,
}

impl std::fmt::Debug for TimeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeLimit")
            .field("expired", &lock(&self.shared).expired)
            .finish()
    }
}

impl TimeLimit {
    /// Starts a watchdog for the calling test: if the guard is still alive
    /// `limit` (real time) from now, the test's async body (see [`within`])
    /// is woken to fail; if it is still alive `grace` after that, the
    /// process exits with status 101, naming the test.
    fn start(limit: Duration, grace: Duration) -> TimeLimit {
        let shared: Shared = Arc::default();
        let name = std::thread::current().name().unwrap_or("a test").to_owned();
        let watched = Arc::clone(&shared);
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            if wait_until_done(&watched, deadline) {
                return;
            }
            let waker = {
                let mut state = lock(&watched);
                state.expired = true;
                state.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
            if wait_until_done(&watched, Instant::now() + grace) {
                return;
            }
            let _ = writeln!(
                std::io::stderr(),
                "TIME LIMIT: {name} did not finish within {limit:?} of real time; \
                 ending the test process"
            );
            std::process::exit(101);
        });
        TimeLimit { shared }
    }

    /// Whether the limit has passed.
    pub fn expired(&self) -> bool {
        lock(&self.shared).expired
    }

    fn register(&self, waker: &Waker) -> bool {
        let mut state = lock(&self.shared);
        if !state.expired {
            state.waker = Some(waker.clone());
        }
        state.expired
    }
}

impl Drop for TimeLimit {
    fn drop(&mut self) {
        lock(&self.shared).done = true;
        self.shared.1.notify_all();
    }
}

/// Waits until the guard is dropped (true) or `deadline` passes (false).
fn wait_until_done(shared: &Shared, deadline: Instant) -> bool {
    let mut state = lock(shared);
    loop {
        if state.done {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        state = shared
            .1
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Limits a whole synchronous test (or any test) to `secs` seconds of real
/// time: keep the guard for the test's duration. Past the limit the test
/// process ends with a failure status, naming the test on stderr.
///
/// ```
/// let _limit = test_support::time_limit(30);
/// // ... wait on a child process ...
/// ```
pub fn time_limit(secs: u64) -> TimeLimit {
    TimeLimit::start(Duration::from_secs(secs), Duration::ZERO)
}

/// Runs `body`, failing the test with a panic if it has not finished after
/// `secs` seconds of real time (tokio's paused clock does not move this
/// limit). If the body cannot even be polled again (it blocks its thread),
/// the process ends with a failure status a few seconds later.
///
/// ```
/// # async fn demo() {
/// let answer = test_support::within(10, async { 42 }).await;
/// assert_eq!(answer, 42);
/// # }
/// ```
pub async fn within<F: Future>(secs: u64, body: F) -> F::Output {
    let limit = TimeLimit::start(Duration::from_secs(secs), GRACE);
    let mut body = pin!(body);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = body.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if limit.register(cx.waker()) {
            panic!("the test did not finish within {secs} s of real time");
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }

    #[test]
    fn a_body_that_finishes_in_time_returns_its_output() {
        assert_eq!(block_on(within(5, async { 7 })), 7);
    }

    #[test]
    fn a_body_that_never_finishes_panics_at_the_limit() {
        let started = Instant::now();
        let r = std::panic::catch_unwind(|| block_on(within(1, std::future::pending::<()>())));
        let message = r.expect_err("a pending body must fail");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("within 1 s"), "{message}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }

    #[test]
    fn a_dropped_guard_stops_the_watchdog() {
        let limit = TimeLimit::start(Duration::from_millis(50), Duration::from_millis(300));
        assert!(!limit.expired());
        std::thread::sleep(Duration::from_millis(150));
        assert!(limit.expired());
        drop(limit);
        // Past the grace: had the drop not stopped the watchdog, it would
        // have ended this test process (status 101) by now.
        std::thread::sleep(Duration::from_millis(600));
    }
}
