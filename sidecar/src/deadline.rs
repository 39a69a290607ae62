//! Deadlines that mostly move later, timed by one timer.
//!
//! A connection's requests (or request heads) come one after another, each
//! with a deadline later than the one before. A timer per request costs a
//! registration in tokio's timer wheel and a cancellation, every time.
//! [`LaterDeadlines`] keeps one timer instead. It is set when first needed,
//! and when it fires for a deadline that has since moved on, it is set
//! again for the current one. Starting a request then costs only the
//! reading of the clock.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// One timer serving a sequence of deadlines; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct LaterDeadlines {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LaterDeadlines {
    /// No timer yet; the first [`LaterDeadlines::poll_passed`] that finds
    /// `limit` ahead sets one.
    pub(crate) fn new() -> Self {
        LaterDeadlines::default()
    }

    /// Whether `limit` has passed. If not, `cx` is woken when it does, or
    /// earlier (when the timer fires for a deadline given before), and the
    /// caller polls again then.
    ///
    /// A `limit` earlier than the timer's moves the timer back to it, so
    /// any sequence of deadlines is timed correctly; only a later one is
    /// free.
    pub(crate) fn poll_passed(&mut self, limit: Instant, cx: &mut Context<'_>) -> bool {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(limit)));
        if sleep.deadline() > limit {
            sleep.as_mut().reset(limit);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if sleep.deadline() >= limit {
                return true;
            }
            // Fired for an earlier deadline: moved on to this one.
            sleep.as_mut().reset(limit);
        }
    }
}

/// The deadline passed before the work was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Runs `work` until it is done, or until `limit` passes first, timed by
/// `timer`. The work is polled first, so work that is ready at once never
/// touches the timer.
///
/// Share one timer between the futures that one task polls: the timer
/// wakes only the task that polled it last.
pub(crate) async fn within<F: Future>(
    timer: &Mutex<LaterDeadlines>,
    limit: Instant,
    work: F,
) -> Result<F::Output, Elapsed> {
    let mut work = pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(done));
        }
        let mut timer = timer.lock().unwrap_or_else(PoisonError::into_inner);
        if timer.poll_passed(limit, cx) {
            Poll::Ready(Err(Elapsed))
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn work_done_in_time_gives_its_output() {
        let timer = Mutex::new(LaterDeadlines::new());
        let start = Instant::now();
        let out = within(&timer, start + 10 * SECOND, async {
            tokio::time::sleep(3 * SECOND).await;
            7
        })
        .await;
        assert_eq!(out, Ok(7));
        assert_eq!(Instant::now() - start, 3 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn ready_work_sets_no_timer() {
        let timer = Mutex::new(LaterDeadlines::new());
        let out = within(&timer, Instant::now(), async { "now" }).await;
        assert_eq!(out, Ok("now"));
        assert!(timer.lock().unwrap().sleep.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_never_ends_elapses_at_its_deadline() {
        let timer = Mutex::new(LaterDeadlines::new());
        let start = Instant::now();
        let out = within(&timer, start + 5 * SECOND, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Elapsed));
        assert_eq!(Instant::now() - start, 5 * SECOND);
    }

    /// The second request's deadline is later than the first's, whose
    /// timer is still set: it must not elapse when that timer fires.
    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_outlasts_the_timer_set_for_an_earlier_one() {
        let timer = Mutex::new(LaterDeadlines::new());
        let start = Instant::now();
        let first = within(&timer, start + 10 * SECOND, async {
            tokio::time::sleep(SECOND).await;
        })
        .await;
        assert_eq!(first, Ok(()));
        tokio::time::sleep(4 * SECOND).await;
        // Now start + 5 s; this deadline is start + 15 s.
        let second = within(&timer, start + 15 * SECOND, std::future::pending::<()>()).await;
        assert_eq!(second, Err(Elapsed));
        assert_eq!(Instant::now() - start, 15 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_back() {
        let timer = Mutex::new(LaterDeadlines::new());
        let start = Instant::now();
        let first = within(&timer, start + 20 * SECOND, async {
            tokio::time::sleep(SECOND).await;
        })
        .await;
        assert_eq!(first, Ok(()));
        let second = within(&timer, start + 3 * SECOND, std::future::pending::<()>()).await;
        assert_eq!(second, Err(Elapsed));
        assert_eq!(Instant::now() - start, 3 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_passed_elapses_at_once() {
        let timer = Mutex::new(LaterDeadlines::new());
        let start = Instant::now();
        tokio::time::sleep(2 * SECOND).await;
        let out = within(&timer, start, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Elapsed));
        assert_eq!(Instant::now() - start, 2 * SECOND);
    }
}
