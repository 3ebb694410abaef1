//! A deadline that costs nothing to poll before it is due.
//!
//! A future that races a timer (`select!`, `tokio::time::timeout`) polls the
//! timer on every wake-up of its task, and a tokio `Sleep` poll is not free:
//! the coop budget, the time driver's handle and the waker registration cost
//! about 250 instructions each time (callgrind). On the request path a
//! connection's task wakes several times per request while its watchdog tick
//! and the response timeout are far from due, so weir paid that 3–7 times
//! per request for nothing.
//!
//! [`LazySleep`] polls its `Sleep` once, which registers the task's waker
//! with the time driver, and afterwards only when the driver has marked it
//! elapsed ([`tokio::time::Sleep::is_elapsed`], one atomic load). This is
//! sound because the driver wakes the registered waker when the deadline
//! passes, and a tokio task's waker does not change between polls (a
//! `LazySleep` is meant to stay in the task that first polled it).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// A `Sleep` that is polled only when it is first polled and once it
    /// has elapsed. It becomes ready at its deadline, like the `Sleep`
    /// inside it (held inline: no allocation).
    #[derive(Debug)]
    pub struct LazySleep {
        #[pin]
        sleep: Sleep,
        // The waker of the last poll is registered with the time driver.
        armed: bool,
    }
}

impl LazySleep {
    /// A timer due at `deadline`.
    pub fn until(deadline: Instant) -> Self {
        LazySleep {
            sleep: tokio::time::sleep_until(deadline),
            armed: false,
        }
    }

    /// A timer due `after` from now.
    pub fn after(after: Duration) -> Self {
        Self::until(Instant::now() + after)
    }

    /// When it is due.
    pub fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }

    /// Moves the deadline to `deadline`; the next poll registers it.
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.project();
        this.sleep.reset(deadline);
        *this.armed = false;
    }
}

impl Future for LazySleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if *this.armed && !this.sleep.is_elapsed() {
            return Poll::Pending;
        }
        *this.armed = true;
        this.sleep.poll(cx)
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout_at`] and [`timeout`]: `f` and its timer,
    /// both inline (no allocation, and `f` is not moved once polled).
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        f: F,
        #[pin]
        timer: LazySleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.f.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.timer.poll(cx).map(|()| Err(Elapsed))
    }
}

/// Runs `f` until `deadline`: `Err(Elapsed)` when it is not done by then
/// (`tokio::time::timeout_at` with a [`LazySleep`]). `f` is polled first,
/// so a result that is ready at the deadline wins.
///
/// # Errors
/// [`Elapsed`] at the deadline; `f` is dropped with the future.
pub fn timeout_at<F: Future>(deadline: Instant, f: F) -> Timeout<F> {
    Timeout {
        f,
        timer: LazySleep::until(deadline),
    }
}

/// Runs `f` for at most `limit` (see [`timeout_at`]).
///
/// # Errors
/// [`Elapsed`] after `limit`.
pub fn timeout<F: Future>(limit: Duration, f: F) -> Timeout<F> {
    timeout_at(Instant::now() + limit, f)
}

/// The deadline of a [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_its_deadline_though_polled_lazily() {
        let start = Instant::now();
        LazySleep::after(Duration::from_millis(250)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        // Elapsed stays elapsed: awaited again, it is ready at once.
        let timer = LazySleep::after(Duration::from_millis(50));
        tokio::pin!(timer);
        (&mut timer).await;
        (&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_gives_way_to_the_future_and_fires_without_it() {
        assert_eq!(timeout(Duration::from_secs(1), async { 7 }).await, Ok(7));
        let start = Instant::now();
        let slow = tokio::time::sleep(Duration::from_secs(60));
        assert_eq!(timeout(Duration::from_secs(2), slow).await, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn other_wakeups_do_not_end_it_early_and_reset_moves_it() {
        // The task wakes every 10 ms for another reason (an interval): the
        // timer is skipped on those polls, and still fires on time.
        let start = Instant::now();
        let timer = LazySleep::after(Duration::from_millis(100));
        tokio::pin!(timer);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut ticks = 0;
        loop {
            tokio::select! {
                () = &mut timer => break,
                _ = tick.tick() => ticks += 1,
            }
            assert!(ticks < 1000, "the timer never fired");
            if ticks == 3 {
                timer
                    .as_mut()
                    .reset(Instant::now() + Duration::from_millis(200));
            }
        }
        assert_eq!(start.elapsed(), Duration::from_millis(220));
        assert!(ticks >= 20, "{ticks} ticks");
    }
}
