//! Admission per route, bounded by time: a route admits at most as many buys as its upstream
//! completes in the target wait, so a buy it admits waits about that long at most, whatever
//! the stack behind it serves; the others are refused at once (503 + `Retry-After`).
//!
//! Why a limit from Little's law. The front tier holds no queue of its own: an admitted buy
//! waits downstream (in nginx and a backend, or in the request queue and a worker), where the
//! front tier cannot see it. What it does see are the numbers Little's law ties together: the
//! buys it has in flight (N), the time each waited for its answer (W), and the rate at which
//! the upstream answers them (X). Holding `N <= X * target` bounds the wait by the target: a
//! prefetch-1 queue, a batched one and a quorum cluster each get their own limit from their
//! own rate, found within a window or two, with nothing to re-tune. (An AIMD limit needs
//! hundreds of steps to move from one stack's limit to another's; a gradient on latency aims
//! at the lowest latency seen, not at a wait the operator chose; a CoDel deadline needs a
//! queue the front tier holds.)
//!
//! X is measured two ways, and the lower is taken: the answers served over the last few
//! windows (a batched worker's answers land 64 at once, so one window alone would swing),
//! and N / W, the rate at which the buys in flight drain (which stays right when answers
//! come in bursts, but runs high while a queue builds up: W is then the wait of buys
//! admitted when the queue was shorter).
//!
//! The estimate of X is only updated from windows that measure the upstream's capacity, not
//! the buyers' arrival rate: a window is *saturated* when the median wait of the buys
//! answered in it is more than the target, and the buys in flight would take more than the
//! target at the rate served. The median, and the second condition: buys held through a
//! partition and answered seconds late must not make a route that serves everyone else at
//! once look stalled. More than the target, not half of it: the rates are noisy (a batched
//! worker's answers land 64 at once), and a healthy closed loop waiting 100-190 ms would
//! otherwise be refused whenever a window read low. A saturated window moves the
//! estimate halfway to its rate; a window that is not only raises it to what was served (a
//! quiet spell says nothing about what the upstream can do). Until the first saturated
//! window the limit is the ceiling, so a closed loop that never queues (the original
//! experiment) is never refused, and the first rush of a sale is measured, not guessed at.
//!
//! The first rush, after a start or a quiet spell, is measured sooner: there the median
//! lags the queue (the first answers are the buys that found it short), so until a window
//! shows the route keeping up, the wait ahead alone decides while the buys in flight grow
//! from window to window. Growing, so that a closed loop (a steady crowd) whose first
//! answers come slowly from a cold pipeline is not taken for a rush.
//! Otherwise a slow stack admits its whole ceiling before the median passes the target (a
//! quorum cluster serving 400/s: 512 buys, more than a second of waiting for the last of
//! them). A closed loop within the target is past its rush in its first window with
//! answers, so a partition later on (buys held, few answers) finds the rule off.
//!
//! Only a second saturated window in a row moves the estimate down: one alone is as likely
//! the first answers of a rush on a cold pipeline. Windows that carry no measure of the
//! upstream are skipped: one longer than [`IDLE`], or than [`QUIET`] with next to nothing in
//! flight (windows close on arrivals, so the route was idle or nearly and its rate would be
//! the buyers'), and one without answers while the
//! buys in flight have not yet waited the target (the first answers of a sale are on their
//! way). Buys in flight with no answer for the target or longer are a stall: the estimate
//! halves each window, down to [`FLOOR`].
//!
//! Invariants:
//! - the limit is always between [`FLOOR`] and the route's ceiling (`--max-in-flight-*`),
//!   and is the ceiling when the target is off (`--target-wait-ms 0`);
//! - deciding costs a few atomic operations and never waits: a refused buy is answered at
//!   once; only one caller at a time (a `try_lock`) closes a window;
//! - only answers count as completions: an upstream failing fast (503s, broken connections)
//!   does not make the route look faster than it serves.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

mod waits;

use waits::Waits;

/// Length of a measuring window: long enough to hold tens of completions on the slowest
/// stack (a quorum cluster), short enough that a new rush is measured within a few.
pub const WINDOW: Duration = Duration::from_millis(100);

/// A window longer than this says the route was idle (windows close on arrivals): it is
/// skipped, and what was measured before it forgotten.
pub const IDLE: Duration = Duration::from_secs(1);

/// A window longer than this with fewer than [`FLOOR`] buys in flight says the route was quiet:
/// no arrival for a whole window past its end, so what it served is the buyers' rate, not the
/// upstream's. It is skipped as an idle one is.
pub const QUIET: Duration = Duration::from_millis(200);

/// The least limit: buys admitted even when nothing completes, so that a stalled or slow
/// upstream is still probed and its rate measured.
pub const FLOOR: u32 = 8;

/// A saturated window moves the rate estimate this far toward its own rate.
const SMOOTHING: f64 = 0.5;

/// Windows with answers over which the answers served are counted.
const SPAN: usize = 3;

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
    /// The median of those buys' waits (admission to answer).
    pub median_wait: Duration,
    /// The most buys in flight at once during the window: with the answers' median wait, the
    /// rate (N / W). The most, not the count at the close: a window closes on an arrival, and
    /// in a closed loop the arrivals come right after a batch of answers emptied the route.
    pub in_flight: u32,
}

/// The limit's arithmetic, without clocks or atomics: fed one [`Window`] at a time.
#[derive(Debug, Clone)]
pub struct Controller {
    target: Option<Duration>,
    ceiling: u32,
    /// Completions per second the upstream is believed to serve; `None` until measured.
    rate: Option<f64>,
    /// How long buys have been in flight without an answer, counted from the end of the
    /// first such window (so it never includes a buy's own admission window); `None` while
    /// answers come.
    unanswered: Option<Duration>,
    /// The last few windows with answers: (length, answers).
    recent: VecDeque<(Duration, u64)>,
    /// Whether the last window with answers was saturated.
    saturated: bool,
    /// Whether the route is in the first rush after a start or an idle spell: no window with
    /// answers has yet shown it keeping up (the buys in flight taking at most the target at
    /// the rate served), and no rate has been measured since.
    rushing: bool,
    /// The previous window's most buys in flight (0 after an idle spell): a rush is a
    /// growing crowd, a closed loop a steady one.
    in_flight_before: u32,
}

impl Controller {
    /// `target`: `None` keeps the limit at `ceiling`.
    pub fn new(target: Option<Duration>, ceiling: u32) -> Self {
        Self {
            target,
            ceiling: ceiling.max(1),
            rate: None,
            unanswered: None,
            recent: VecDeque::with_capacity(SPAN),
            saturated: false,
            rushing: true,
            in_flight_before: 0,
        }
    }

    /// Takes in one window; returns the limit for the next.
    pub fn observe(&mut self, window: Window) -> u32 {
        let Some(target) = self.target else {
            return self.ceiling;
        };
        let few = window.in_flight < FLOOR;
        if window.elapsed.is_zero() || window.elapsed > IDLE || (window.elapsed > QUIET && few) {
            self.unanswered = None;
            self.recent.clear();
            self.saturated = false;
            // A rush follows a quiet route, not a stalled one: buys held through a partition
            // and nobody arriving make a long window too.
            if few {
                self.rushing = true;
                self.in_flight_before = 0;
            } else {
                self.in_flight_before = window.in_flight;
            }
            return self.limit();
        }
        let growing = window.in_flight > self.in_flight_before;
        self.in_flight_before = window.in_flight;
        if window.completed == 0 {
            if window.in_flight == 0 {
                self.unanswered = None;
                return self.limit();
            }
            let unanswered = self
                .unanswered
                .map_or(Duration::ZERO, |so_far| so_far + window.elapsed);
            self.unanswered = Some(unanswered);
            if unanswered >= target {
                self.rate = Some(self.rate.map_or(0.0, |known| known * (1.0 - SMOOTHING)));
            }
            return self.limit();
        }
        self.unanswered = None;
        if self.recent.len() == SPAN {
            self.recent.pop_front();
        }
        self.recent.push_back((window.elapsed, window.completed));
        let (span, answers) = self.recent.iter().fold(
            (Duration::ZERO, 0),
            |(span, answers), (elapsed, completed)| (span + *elapsed, answers + completed),
        );
        // Served: the answers of the last few windows, so that a batched worker's bursts (64
        // answers landing at once) average out.
        let served = answers as f64 / span.as_secs_f64();
        let wait = window.median_wait.as_secs_f64();
        let target_s = target.as_secs_f64();
        // Both the waits behind (the median) and the wait ahead (the buys in flight at the
        // rate served) must pass the target: the first alone is fooled by buys held through a
        // partition and answered late, the second alone by a window of few answers.
        let ahead = f64::from(window.in_flight) / served;
        // In a first rush the waits behind lag the queue (the first answers are the buys
        // that found it short): the wait ahead decides while the crowd grows. A steady one
        // (a closed loop whose first answers come slowly from a cold pipeline) is left to
        // the median.
        let rush = self.rushing && growing;
        let saturated = (rush || wait > target_s) && ahead > target_s;
        // Two saturated windows in a row: one alone is as likely the first answers of a rush
        // on a cold pipeline.
        let sustained = saturated && self.saturated;
        self.saturated = saturated;
        if sustained || ahead <= target_s {
            self.rushing = false;
        }
        self.rate = match self.rate {
            _ if sustained => {
                // Little's law, X = N / W, bounds what was served from above while the waits
                // lag the queue (they are the waits of buys admitted a while ago); what was
                // served bounds it while the answers come in bursts. Either may be the lower.
                let draining = f64::from(window.in_flight.max(1)) / wait.max(1e-6);
                let rate = served.min(draining);
                Some(
                    self.rate
                        .map_or(rate, |known| known + SMOOTHING * (rate - known)),
                )
            }
            None => None,
            Some(known) if saturated => Some(known),
            // A window that is not saturated says what the upstream can at least serve.
            Some(known) => Some(known.max(served)),
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

    /// The estimated completion rate (per second), once a saturated window has been seen.
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
    /// The most buys in flight at once in the current window (only with a target).
    peak: AtomicU32,
    /// The waits of the buys answered in the current window (only with a target).
    waits: Waits,
    /// When the current window may close, in nanoseconds since `epoch`.
    window_ends: AtomicU64,
    epoch: Instant,
    state: Mutex<State>,
}

struct State {
    controller: Controller,
    started: Instant,
}

/// A buy admitted on a route; leaving it (drop) frees its place.
#[must_use = "the buy is in flight only while its permit is held"]
pub struct Permit<'a> {
    admission: &'a Admission,
    admitted: Instant,
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
        let admission = self.admission;
        if self.answered && admission.target.is_some() {
            admission.waits.record(self.admitted.elapsed());
        }
        admission.in_flight.fetch_sub(1, Ordering::AcqRel);
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
            peak: AtomicU32::new(0),
            waits: Waits::new(),
            window_ends: AtomicU64::new(nanos(WINDOW)),
            epoch: now,
            state: Mutex::new(State {
                controller,
                started: now,
            }),
        }
    }

    /// Admits a buy, or says at once why not.
    pub fn try_admit(&self) -> Result<Permit<'_>, Refusal> {
        // The clock is read only when the target is on: it times the windows and the waits.
        let now = if self.target.is_some() {
            let now = Instant::now();
            self.close_window_if_due(now);
            now
        } else {
            self.epoch
        };
        let limit = self.limit.load(Ordering::Relaxed);
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        match admitted {
            Ok(before) => {
                if self.target.is_some() {
                    self.peak.fetch_max(before + 1, Ordering::Relaxed);
                }
                Ok(Permit {
                    admission: self,
                    admitted: now,
                    answered: false,
                })
            }
            Err(_) => Err(match self.target {
                Some(target) if limit < self.ceiling => Refusal::TargetWait { limit, target },
                _ => Refusal::Ceiling { limit },
            }),
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

    /// The estimated completion rate (per second), once the route has been saturated.
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
        let answered = self.waits.take();
        let window = Window {
            elapsed,
            completed: answered.answers,
            median_wait: answered.median,
            // The next window starts from the buys in flight now.
            in_flight: self
                .peak
                .swap(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed),
        };
        let limit = state.controller.observe(window);
        tracing::debug!(
            elapsed_ms = window.elapsed.as_millis() as u64,
            answered = window.completed,
            median_wait_ms = window.median_wait.as_millis() as u64,
            in_flight = window.in_flight,
            rate = state.controller.rate().unwrap_or(0.0),
            limit,
            "admission window"
        );
        self.limit.store(limit, Ordering::Relaxed);
        state.started = now;
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

    /// A 100 ms window: `completed` answers whose median wait was `wait_ms`.
    fn window(completed: u64, wait_ms: u64, in_flight: u32) -> Window {
        Window {
            elapsed: WINDOW,
            completed,
            median_wait: Duration::from_millis(wait_ms),
            in_flight,
        }
    }

    #[test]
    fn before_the_route_is_ever_saturated_the_limit_is_the_ceiling() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // 400 answers in 100 ms that waited 75 ms each: under half the target.
        let limit = controller.observe(window(400, 75, 300));

        assert_eq!(limit, 512);
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn a_saturated_route_admits_its_rate_times_the_target() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // A quorum cluster: 480 in flight, the answers after 600 ms of waiting (800/s).
        controller.observe(window(80, 600, 480));
        let limit = controller.observe(window(80, 600, 480));

        assert_eq!(limit, 160, "800/s x 200 ms");
    }

    #[test]
    fn a_slow_route_s_first_rush_is_measured_before_the_median_passes_the_target() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // A quorum cluster at 1,200 offered a second: the first answers found the queue
        // short (59 ms, 126 ms), but 212 in flight at the 145/s served take 1.5 s.
        assert_eq!(controller.observe(window(11, 59, 109)), 512);
        let limit = controller.observe(window(18, 126, 212));

        assert_eq!(limit, 29, "145/s served x 200 ms");
    }

    #[test]
    fn a_closed_loop_s_cold_start_is_not_a_rush() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // 100 buyers, answered ever faster as the pipeline warms: 300/s, 450/s, 517/s
        // served, the wait ahead past the target twice, but the crowd does not grow.
        for (completed, wait_ms) in [(30, 40), (60, 60), (65, 100)] {
            assert_eq!(controller.observe(window(completed, wait_ms, 100)), 512);
        }
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn a_trickle_before_a_closed_loop_is_not_its_rate() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // One buy answered in a window of 787 ms (nothing else arrived), then 50 buyers in a
        // closed loop: 56 answers in 126 ms, 50 in flight, 110 ms ahead.
        let trickle = Window {
            elapsed: Duration::from_millis(787),
            completed: 1,
            median_wait: Duration::from_millis(13),
            in_flight: 1,
        };
        controller.observe(trickle);
        let closed_loop = Window {
            elapsed: Duration::from_millis(126),
            completed: 56,
            median_wait: Duration::from_millis(77),
            in_flight: 50,
        };
        assert_eq!(controller.observe(closed_loop), 512);
        assert_eq!(controller.observe(window(40, 80, 50)), 512);
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn a_stall_with_buys_held_does_not_start_a_rush() {
        let mut controller = Controller::new(Some(TARGET), 512);
        controller.observe(window(100, 90, 50));

        // 50 buyers all held for 1.5 s (nobody arrives), then answered slowly as the
        // pipeline comes back, the crowd a little larger each window.
        let stall = Window {
            elapsed: Duration::from_millis(1500),
            completed: 0,
            median_wait: Duration::ZERO,
            in_flight: 50,
        };
        controller.observe(stall);
        for (completed, in_flight) in [(10, 52), (12, 55), (15, 58)] {
            assert_eq!(controller.observe(window(completed, 60, in_flight)), 512);
        }
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn after_the_rush_the_wait_ahead_alone_does_not_saturate() {
        let mut controller = Controller::new(Some(TARGET), 512);
        // A closed loop of 100 keeping up: 1,000/s, 100 ms ahead.
        controller.observe(window(100, 90, 100));

        // A worker cut off holds 64 of them: the others are answered fast, few a window.
        for _ in 0..5 {
            assert_eq!(controller.observe(window(20, 30, 100)), 512);
        }
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn an_idle_spell_starts_a_new_rush() {
        let mut controller = Controller::new(Some(TARGET), 512);
        controller.observe(window(100, 90, 100));
        let idle = Window {
            elapsed: Duration::from_secs(5),
            completed: 1,
            median_wait: Duration::from_millis(5),
            in_flight: 1,
        };
        controller.observe(idle);

        controller.observe(window(20, 50, 200));
        assert_eq!(
            controller.observe(window(20, 80, 300)),
            40,
            "200/s x 200 ms"
        );
    }

    #[test]
    fn a_fast_route_keeps_its_ceiling() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // A batched queue at its ceiling answers within the target: never saturated.
        assert_eq!(controller.observe(window(1400, 150, 512)), 512);
    }

    #[test]
    fn the_first_windows_of_a_sale_without_answers_yet_are_not_a_stall() {
        let mut controller = Controller::new(Some(TARGET), 512);

        // The rush is in flight and nothing has come back yet: 100 ms, then 100 ms more.
        assert_eq!(controller.observe(window(0, 0, 100)), 512);
        assert_eq!(controller.observe(window(0, 0, 100)), 512);
        // Then the answers come, quickly.
        assert_eq!(controller.observe(window(900, 40, 100)), 512);
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn a_route_that_answers_nothing_for_the_target_halves_its_rate_each_window() {
        let mut controller = Controller::new(Some(TARGET), 10_000);
        controller.observe(window(100, 250, 250));
        controller.observe(window(100, 250, 250));
        assert_eq!(controller.rate(), Some(1000.0));

        // Two windows without answers start the count; the target reached, it halves.
        controller.observe(window(0, 0, 200));
        controller.observe(window(0, 0, 200));
        assert_eq!(controller.rate(), Some(1000.0));
        controller.observe(window(0, 0, 200));
        assert_eq!(controller.rate(), Some(500.0));
        for _ in 0..10 {
            controller.observe(window(0, 0, 200));
        }
        assert_eq!(controller.limit(), FLOOR);
    }

    #[test]
    fn an_idle_route_keeps_what_it_knew() {
        let mut controller = Controller::new(Some(TARGET), 10_000);
        controller.observe(window(100, 250, 250));
        controller.observe(window(100, 250, 250));

        // 30 s without arrivals, then a buy that took 250 ms: the window measures the idle
        // time, not the upstream.
        let idle = Window {
            elapsed: Duration::from_secs(30),
            completed: 1,
            median_wait: Duration::from_millis(250),
            in_flight: 1,
        };
        assert_eq!(controller.observe(idle), 200);
        // And nothing in flight without answers is not a stall either.
        assert_eq!(controller.observe(window(0, 0, 0)), 200);
        assert_eq!(controller.rate(), Some(1000.0));
    }

    #[test]
    fn a_saturated_window_moves_the_rate_halfway_and_a_quiet_one_only_raises_it() {
        let mut controller = Controller::new(Some(TARGET), 10_000);
        controller.observe(window(100, 250, 250));
        controller.observe(window(100, 250, 250));
        assert_eq!(controller.rate(), Some(1000.0));

        // Saturated, draining at 500/s (200 in flight, 400 ms each): halfway.
        controller.observe(window(50, 400, 200));
        assert_eq!(controller.rate(), Some(750.0));
        // Quiet (2 buys answered at once, 1 in flight): says nothing about capacity.
        controller.observe(window(2, 5, 1));
        assert_eq!(controller.rate(), Some(750.0));
        // Quiet but faster than believed: 120 answers in each of three windows, 1,200/s
        // served, a lower bound, taken.
        for _ in 0..3 {
            controller.observe(window(120, 20, 18));
        }
        assert!((controller.rate().unwrap() - 1200.0).abs() < 1e-6);
        assert_eq!(controller.limit(), 240);
    }

    #[test]
    fn bursts_of_batched_answers_do_not_refuse_a_closed_loop_under_the_target() {
        // A batch-64 worker serving 100 buyers in a closed loop: each waits 190 ms, under the
        // target, and 100 ms windows see 0, 64 or 128 answers as the batches land.
        let mut controller = Controller::new(Some(TARGET), 512);
        for completed in [128, 64, 128, 0, 128, 64, 128, 64, 0, 128, 64, 128, 64] {
            let limit = controller.observe(window(completed, 190, 100));
            assert!(limit > 100, "{completed} answers: limit {limit}");
        }
    }

    #[test]
    fn buys_held_through_a_partition_and_answered_late_do_not_look_like_a_stall() {
        let mut controller = Controller::new(Some(TARGET), 512);
        for _ in 0..3 {
            controller.observe(window(60, 80, 55));
        }
        // Most answers of this window are buys a cut-off worker held for 6.5 s, redelivered
        // to the other worker: the median wait is long, but the 53 in flight now take 0.1 s.
        assert_eq!(controller.observe(window(35, 6_500, 53)), 512);
        assert_eq!(controller.rate(), None);
    }

    #[test]
    fn a_limit_too_low_to_fill_the_upstream_grows_back() {
        // An upstream that answers each buy in 20 ms, up to 4,000/s: at a limit of L it
        // completes min(L / 20 ms, 4,000) a second, each buy waiting L / rate.
        let serve = |limit: u32| (f64::from(limit) / 0.020).min(4000.0);
        let mut controller = Controller::new(Some(TARGET), 10_000);
        // A stall that ended: 4 answers a window, each after a second.
        controller.observe(window(4, 1000, 30));
        let mut limit = controller.observe(window(4, 1000, 30));
        assert_eq!(limit, FLOOR);

        let mut limits = Vec::new();
        for _ in 0..20 {
            let rate = serve(limit);
            let completed = (rate * WINDOW.as_secs_f64()) as u64;
            let wait_ms = (f64::from(limit) / rate * 1000.0) as u64;
            limit = controller.observe(window(completed, wait_ms, limit));
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
        assert_eq!(controller.observe(window(0, 0, 10)), 10);
    }

    #[test]
    fn the_floor_never_exceeds_a_lower_ceiling() {
        let mut controller = Controller::new(Some(TARGET), 3);
        controller.observe(window(1, 5000, 3));
        assert_eq!(controller.observe(window(1, 5000, 3)), 3);
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

        // 200 ms later the upstream has answered 160 of them (800/s), each after 200 ms. The
        // next buy closes that window: saturated, but one window alone changes nothing.
        tokio::time::advance(Duration::from_millis(200)).await;
        for mut permit in permits.drain(..160) {
            permit.answered();
        }
        permits.push(
            admission
                .try_admit()
                .expect("one saturated window: still the ceiling"),
        );
        // 100 ms more, 80 more answers: two saturated windows in a row.
        tokio::time::advance(WINDOW).await;
        for mut permit in permits.drain(..80) {
            permit.answered();
        }

        // The next buy closes the window: 800/s served (353 draining in 300 ms would say
        // more: the lower is taken) x 200 ms = 160.
        let refusal = admission.try_admit().err().expect("over the new limit");
        let limit = admission.limit();
        assert!((150..=170).contains(&limit), "limit {limit}");
        assert_eq!(
            refusal,
            Refusal::TargetWait {
                limit,
                target: TARGET
            }
        );
        assert_eq!(admission.in_flight(), 273);

        // Once fewer than the limit are in flight, buys get in again.
        permits.truncate(limit as usize - 1);
        assert_eq!(admission.in_flight(), limit - 1);
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
        // Three windows with buys in flight and no answer: the target (200 ms) passes.
        for _ in 0..3 {
            tokio::time::advance(WINDOW).await;
            let _ = admission.try_admit();
        }

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
