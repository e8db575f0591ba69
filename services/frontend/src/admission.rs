//! Admission per route, bounded by time: a route admits at most as many buys as its upstream
//! completes in the target wait, so a buy it admits waits about that long at most, whatever
//! the stack behind it serves; the others are refused at once (503 + `Retry-After`).
//!
//! Why a limit from Little's law. The front tier holds no queue of its own: an admitted buy
//! waits downstream (in nginx and a backend, or in the request queue and a worker), where the
//! front tier cannot see it. What it does see are the two numbers Little's law ties to that
//! wait: the buys it has in flight (N) and the rate at which they complete (X). In a steady
//! state a buy waits N / X, so `N <= X * target` bounds the wait by the target: a prefetch-1
//! queue, a batched one and a quorum cluster each get their own limit from their own rate,
//! found within a window or two, with nothing to re-tune. (An AIMD limit needs hundreds of
//! steps to move from one stack's limit to another's; a gradient on latency aims at the
//! lowest latency seen, not at a wait the operator chose; a CoDel deadline needs a queue the
//! front tier holds.)
//!
//! The estimate of X is only updated from windows that measure the upstream's capacity, not
//! the buyers' arrival rate: a window is *saturated* when a buy was refused in it, or when
//! the buys in flight at its end would take more than half the target to complete at its
//! rate. A saturated window moves the estimate halfway to its rate; a window that is not
//! only raises it (a quiet spell says nothing about what the upstream can do). Until the
//! first saturated window the limit is the ceiling, so a closed loop that never queues (the
//! original experiment) is never refused, and the first rush of a sale is measured, not
//! guessed at.
//!
//! Invariants:
//! - the limit is always between [`FLOOR`] and the route's ceiling (`--max-in-flight-*`),
//!   and is the ceiling when the target is off (`--target-wait-ms 0`);
//! - deciding costs a few atomic operations and never waits: a refused buy is answered at
//!   once; only one caller at a time (a `try_lock`) closes a window;
//! - only answers count as completions: an upstream failing fast (503s, broken connections)
//!   does not make the route look faster than it serves.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Length of a measuring window: long enough to hold tens of completions on the slowest
/// stack (a quorum cluster), short enough that a new rush is measured within a few.
pub const WINDOW: Duration = Duration::from_millis(100);

/// The least limit: buys admitted even when nothing completes, so that a stalled or slow
/// upstream is still probed and its rate measured.
pub const FLOOR: u32 = 8;

/// A saturated window moves the rate estimate this far toward its own rate.
const SMOOTHING: f64 = 0.5;

/// Why a buy was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The route's hard ceiling (`--max-in-flight-*`) is reached.
    Ceiling { limit: u32 },
    /// More buys in flight would wait longer than the target at the measured rate.
    TargetWait { limit: u32, target: Duration },
}

impl Refusal {
    /// The `reason` label of the rejections metric.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Ceiling { .. } => "in_flight_limit",
            Self::TargetWait { .. } => "target_wait",
        }
    }
}

/// What one window saw, for [`Controller::observe`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub elapsed: Duration,
    /// Buys answered during the window.
    pub completed: u64,
    /// Buys refused during the window.
    pub refused: u64,
    /// Buys in flight when the window closed.
    pub in_flight: u32,
}

/// The limit's arithmetic, without clocks or atomics: fed one [`Window`] at a time.
#[derive(Debug, Clone)]
pub struct Controller {
    target: Option<Duration>,
    ceiling: u32,
    /// Completions per second the upstream is believed to serve; `None` until measured.
    rate: Option<f64>,
}

impl Controller {
    /// `target`: `None` keeps the limit at `ceiling`.
    pub fn new(target: Option<Duration>, ceiling: u32) -> Self {
        Self {
            target,
            ceiling: ceiling.max(1),
            rate: None,
        }
    }

    /// Takes in one window; returns the limit for the next.
    pub fn observe(&mut self, window: Window) -> u32 {
        let Some(target) = self.target else {
            return self.ceiling;
        };
        let seconds = window.elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return self.limit();
        }
        let rate = window.completed as f64 / seconds;
        let saturated =
            window.refused > 0 || f64::from(window.in_flight) > rate * target.as_secs_f64() / 2.0;
        self.rate = match self.rate {
            None if saturated => Some(rate),
            None => None,
            Some(known) if saturated => Some(known + SMOOTHING * (rate - known)),
            Some(known) => Some(known.max(rate)),
        };
        self.limit()
    }

    /// The current limit: the rate times the target, within [`FLOOR`] and the ceiling.
    pub fn limit(&self) -> u32 {
        match (self.target, self.rate) {
            (Some(target), Some(rate)) => {
                let limit = (rate * target.as_secs_f64()).ceil();
                // Saturating float-to-int conversion, then the bounds.
                (limit as u32).clamp(FLOOR.min(self.ceiling), self.ceiling)
            }
            _ => self.ceiling,
        }
    }

    /// The measured completion rate (per second), once a saturated window has been seen.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }
}

/// One route's admission: the counters of the hot path and the controller behind them.
pub struct Admission {
    target: Option<Duration>,
    ceiling: u32,
    limit: AtomicU32,
    in_flight: AtomicU32,
    /// Totals since start; windows take differences.
    completed: AtomicU64,
    refused: AtomicU64,
    /// When the current window may close, in nanoseconds since `epoch`.
    window_ends: AtomicU64,
    epoch: Instant,
    state: Mutex<State>,
}

struct State {
    controller: Controller,
    started: Instant,
    completed: u64,
    refused: u64,
}

/// A buy admitted on a route; leaving it (drop) frees its place.
#[must_use = "the buy is in flight only while its permit is held"]
pub struct Permit<'a> {
    admission: &'a Admission,
    answered: bool,
}

impl Permit<'_> {
    /// The upstream answered this buy: it counts toward the route's completion rate.
    pub fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.answered {
            self.admission.completed.fetch_add(1, Ordering::Relaxed);
        }
        self.admission.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// `target`: the wait to bound (`None`: off, the ceiling only); `ceiling`: the most buys in
    /// flight at once, whatever the target allows.
    pub fn new(target: Option<Duration>, ceiling: u32) -> Self {
        let now = Instant::now();
        let controller = Controller::new(target, ceiling);
        Self {
            target,
            ceiling: ceiling.max(1),
            limit: AtomicU32::new(controller.limit()),
            in_flight: AtomicU32::new(0),
            completed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            window_ends: AtomicU64::new(nanos(WINDOW)),
            epoch: now,
            state: Mutex::new(State {
                controller,
                started: now,
                completed: 0,
                refused: 0,
            }),
        }
    }

    /// Admits a buy, or says at once why not.
    pub fn try_admit(&self) -> Result<Permit<'_>, Refusal> {
        if self.target.is_some() {
            self.close_window_if_due(Instant::now());
        }
        let limit = self.limit.load(Ordering::Relaxed);
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(Permit {
                admission: self,
                answered: false,
            }),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(match self.target {
                    Some(target) if limit < self.ceiling => Refusal::TargetWait { limit, target },
                    _ => Refusal::Ceiling { limit },
                })
            }
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Buys in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The measured completion rate (per second), once the route has been saturated.
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().unwrap().controller.rate()
    }

    fn close_window_if_due(&self, now: Instant) {
        let since_epoch = nanos(now.saturating_duration_since(self.epoch));
        if since_epoch < self.window_ends.load(Ordering::Relaxed) {
            return;
        }
        // Another caller is closing it: this one goes on with the current limit.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let elapsed = now.saturating_duration_since(state.started);
        if elapsed < WINDOW {
            return;
        }
        let completed = self.completed.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        let window = Window {
            elapsed,
            completed: completed - state.completed,
            refused: refused - state.refused,
            in_flight: self.in_flight.load(Ordering::Relaxed),
        };
        let limit = state.controller.observe(window);
        self.limit.store(limit, Ordering::Relaxed);
        state.started = now;
        state.completed = completed;
        state.refused = refused;
        self.window_ends
            .store(since_epoch + nanos(WINDOW), Ordering::Relaxed);
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(200);

    fn window(completed: u64, refused: u64, in_flight: u32) -> Window {
        Window {
            elapsed: WINDOW,
            completed,
            refused,
            in_flight,
        }
    }

    #[test]
    fn before_the_route_is_ever_saturated_the_limit_is_the_ceiling() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // 300 in flight at 4,000/s is 75 ms of queue, under half the target; none refused.
        let limit = controller.observe(window(400, 0, 300));

        assert_eq!(limit, 512);
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn a_saturated_route_admits_its_rate_times_the_target() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // A quorum cluster: 80 answers in 100 ms (800/s) with buys being refused.
        let limit = controller.observe(window(80, 50, 512));

        assert_eq!(limit, 160, "800/s x 200 ms");
    }

    #[test]
    fn a_queue_longer_than_half_the_target_is_saturation_even_without_refusals() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // 300 in flight at 800/s is 375 ms of queue.
        assert_eq!(controller.observe(window(80, 0, 300)), 160);
    }

    #[test]
    fn a_fast_route_keeps_its_ceiling() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // A batched queue: 1,400 answers in 100 ms; 14,000/s x 200 ms is far above 512.
        assert_eq!(controller.observe(window(1400, 10, 512)), 512);
    }

    #[test]
    fn a_route_that_completes_nothing_admits_only_the_floor() {
        let mut controller = Controller::new(Some(TARGET), 512);

        assert_eq!(controller.observe(window(0, 0, 20)), FLOOR);
        assert_eq!(controller.observe(window(0, 5, 8)), FLOOR);
    }

    #[test]
    fn a_saturated_window_moves_the_rate_halfway_and_a_quiet_one_only_raises_it() {
        let mut controller = Controller::new(Some(TARGET), 10_000);
        controller.observe(window(100, 1, 200));
        assert_eq!(controller.rate(), Some(1000.0));

        // Saturated at 500/s: halfway.
        controller.observe(window(50, 1, 100));
        assert_eq!(controller.rate(), Some(750.0));
        // Quiet (2 buys, nothing refused, 1 in flight): says nothing about capacity.
        controller.observe(window(2, 0, 1));
        assert_eq!(controller.rate(), Some(750.0));
        // Quiet but faster than believed: a lower bound, taken.
        controller.observe(window(90, 0, 2));
        assert_eq!(controller.rate(), Some(900.0));
        assert_eq!(controller.limit(), 180);
    }

    #[test]
    fn a_limit_too_low_to_fill_the_upstream_grows_back() {
        // An upstream that answers each buy in 20 ms, up to 4,000/s: at a limit of L it
        // completes min(L / 20 ms, 4,000) a second.
        let serve = |limit: u32| (f64::from(limit) / 0.020).min(4000.0);
        let mut controller = Controller::new(Some(TARGET), 10_000);
        // A stall measured 40/s: the limit fell to the floor.
        let mut limit = controller.observe(window(4, 1, 30));
        assert_eq!(limit, FLOOR);

        let mut limits = Vec::new();
        for _ in 0..20 {
            let completed = (serve(limit) * WINDOW.as_secs_f64()) as u64;
            limit = controller.observe(window(completed, 1, limit));
            limits.push(limit);
        }

        assert!(limits.windows(2).all(|w| w[0] <= w[1]), "{limits:?}");
        assert!(
            limits[3] > 400,
            "most of the way within 4 windows: {limits:?}"
        );
        assert_eq!(limit, 800, "4,000/s x 200 ms: {limits:?}");
    }

    #[test]
    fn without_a_target_the_limit_is_the_ceiling() {
        let mut controller = Controller::new(None, 10);
        assert_eq!(controller.observe(window(0, 100, 10)), 10);
    }

    #[test]
    fn the_floor_never_exceeds_a_lower_ceiling() {
        let mut controller = Controller::new(Some(TARGET), 3);
        assert_eq!(controller.observe(window(0, 1, 3)), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_learns_its_limit_window_by_window_and_refuses_past_it_at_once() {
        let admission = Admission::new(Some(TARGET), 512);
        // A burst: 600 buys arrive, 512 get in, 88 are refused at the ceiling.
        let mut permits = Vec::new();
        let mut refusals = Vec::new();
        for _ in 0..600 {
            match admission.try_admit() {
                Ok(permit) => permits.push(permit),
                Err(refusal) => refusals.push(refusal),
            }
        }
        assert_eq!(permits.len(), 512);
        assert_eq!(refusals.len(), 88);
        assert!(
            refusals
                .iter()
                .all(|r| *r == Refusal::Ceiling { limit: 512 })
        );

        // In the first 100 ms the upstream answers 80 of them (800/s).
        for mut permit in permits.drain(..80) {
            permit.answered();
        }
        tokio::time::advance(WINDOW).await;

        // The next buy closes the window: 800/s x 200 ms = 160, and 432 are still in flight.
        let refusal = admission.try_admit().err().expect("over the new limit");
        assert_eq!(
            refusal,
            Refusal::TargetWait {
                limit: 160,
                target: TARGET
            }
        );
        assert_eq!(admission.limit(), 160);
        assert_eq!(admission.in_flight(), 432);

        // Once fewer than 160 are in flight, buys get in again.
        permits.truncate(159);
        assert_eq!(admission.in_flight(), 159);
        assert!(admission.try_admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_do_not_count_as_completions() {
        let admission = Admission::new(Some(TARGET), 512);
        for _ in 0..600 {
            // Admitted and dropped unanswered: the upstream failed each at once.
            drop(admission.try_admit());
        }
        let held: Vec<_> = (0..20).map(|_| admission.try_admit().unwrap()).collect();
        tokio::time::advance(WINDOW).await;

        let _ = admission.try_admit();

        assert_eq!(admission.limit(), FLOOR, "nothing was answered");
        drop(held);
    }

    #[test]
    fn without_a_target_only_the_ceiling_refuses() {
        let admission = Admission::new(None, 2);
        let _a = admission.try_admit().unwrap();
        let _b = admission.try_admit().unwrap();

        assert_eq!(
            admission.try_admit().err(),
            Some(Refusal::Ceiling { limit: 2 })
        );
    }
}
