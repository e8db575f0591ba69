//! The hot loop: concurrent clients, each on its own keep-alive HTTP/1 connection.
//!
//! Two engines speak HTTP: `own` (the default, a lean HTTP/1.1 client) and `hyper`
//! (the reference); both sit behind the `Connection` trait, so the loops, deadlines and
//! accounting below are the same for both.
//!
//! Invariants:
//! - one connection per client, reused across requests (reconnect only after the server
//!   closed it, a broken connection, or a timeout);
//! - every request has a deadline (`Plan::timeout`), connect included, so a run ends only
//!   when every request sent has been answered or has timed out: `run` joins all clients;
//! - the clock starts after every client has connected (and warmed up), and after the
//!   caller's `before_measure` step (the sale reset), so neither is measured; with
//!   `start_together` every connection has also carried one `GET /healthz`, so the server
//!   has accepted it, before any buy;
//! - closed loop: a client sends its next request when the previous one is done;
//!   open loop: request `i` is due at `start + i / rate` (or where the stages' arrivals
//!   reach `i`) and its latency is measured from that intended time, so a stalled server
//!   shows in the percentiles (coordinated omission corrected, as wrk2 does);
//! - open loop: a free client takes the next request of the one schedule, so a request
//!   waits for a connection only when every connection is busy (a pool, as k6's
//!   arrival-rate executors), never behind a slow answer while others sit idle; how late
//!   each request was sent is kept (`send_lag`): the generator's own share of a latency;
//! - a measured request with a user id is a buyer: its first send instant (on this
//!   monotonic clock), its sends and its last answer are kept;
//! - the clients of one thread share one histogram, one set of counts and one timeline
//!   (no locks in the loop); threads are merged at the end;
//! - the timeline buckets each request by the second (since the start) in which it ended.

mod hyper;
mod own;

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use ::hyper::header::HeaderValue;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, oneshot, watch};
use tokio::task::{JoinSet, LocalSet};
use tokio::time::Sleep;

use crate::buyers::{self, Buyer};
use crate::error::LoadtestError;
use crate::http1::RequestTemplate;
use crate::outcome::{Answer, Outcome, Outcomes};
use crate::stages::Stages;
use crate::target::Target;

/// Warm-up requests use user ids from here on, far from any run's ids, so a warm-up
/// order never collides with a measured buyer.
pub const WARMUP_USER_BASE: u64 = 1 << 40;

/// Highest latency the histogram tracks exactly (one hour, in microseconds).
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// Which HTTP client drives the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The lean HTTP/1.1 client (default).
    #[default]
    Own,
    /// hyper's HTTP/1 client connection (the reference).
    Hyper,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Own => "own",
            Engine::Hyper => "hyper",
        }
    }
}

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// Each client sends this many requests (siege's `-r`).
    Repetitions(u64),
    /// This many requests in total (`-n`).
    Requests(u64),
    /// Send until this much time has passed (`-t`).
    Duration(Duration),
}

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// Each client sends its next request when the previous one is done.
    Closed,
    /// Open loop at this many requests per second.
    Rate(f64),
    /// Open loop at a piecewise-linear rate; the stages decide how many requests.
    Stages(Stages),
}

impl Pace {
    /// Open loop: how many requests in all (`None`: closed loop).
    fn open_total(&self, stop: Stop, concurrency: u64) -> Option<u64> {
        let rate = match self {
            Pace::Closed => return None,
            Pace::Stages(stages) => return Some(stages.total()),
            Pace::Rate(rate) => *rate,
        };
        Some(match stop {
            Stop::Repetitions(r) => r.saturating_mul(concurrency),
            Stop::Requests(n) => n,
            Stop::Duration(d) => (rate * d.as_secs_f64()).round() as u64,
        })
    }

    fn is_open(&self) -> bool {
        !matches!(self, Pace::Closed)
    }

    /// Open loop: when request `i` is due, from the start.
    fn due(&self, i: u64) -> Duration {
        match self {
            Pace::Stages(stages) => stages.offset(i),
            Pace::Rate(rate) => Duration::from_secs_f64(i as f64 / rate),
            Pace::Closed => Duration::ZERO,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub stop: Stop,
    pub pace: Pace,
    pub timeout: Duration,
    /// First user id of the measured requests.
    pub user_start: u64,
    pub warmup: Option<Duration>,
    /// Warm every connection with one `GET /healthz` before the clock starts (the first
    /// buys then go out together on connections the server has accepted).
    pub start_together: bool,
    /// Generator threads; 0 means one per core.
    pub threads: usize,
    pub engine: Engine,
    /// Keep the order id of every answer, for the per-buyer file.
    pub keep_order_ids: bool,
}

impl Plan {
    /// Generator threads to use (at least one).
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Requests the run will send, when known in advance.
    pub fn total_requests(&self) -> Option<u64> {
        let concurrency = self.concurrency as u64;
        self.pace
            .open_total(self.stop, concurrency)
            .or(match self.stop {
                Stop::Repetitions(r) => Some(r.saturating_mul(concurrency)),
                Stop::Requests(n) => Some(n),
                Stop::Duration(_) => None,
            })
    }

    fn validate(&self) -> Result<(), LoadtestError> {
        let bad = |msg: &str| Err(LoadtestError::BadOptions(msg.to_string()));
        if self.concurrency == 0 {
            return bad("concurrency (-c) must be at least 1");
        }
        if self.timeout.is_zero() {
            return bad("--timeout-ms must be at least 1");
        }
        if let Pace::Rate(rate) = self.pace
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad("--rate must be a positive number of requests per second");
        }
        Ok(())
    }
}

/// Live counters, read by the progress line while the run goes on.
#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

/// One second of the run: what ended in it, and how many requests were sent in it.
#[derive(Debug, Clone)]
pub struct Second {
    /// Requests sent in this second (by when they really went out).
    pub sent: u64,
    pub outcomes: Outcomes,
    /// Latency of the answered requests that ended in this second (µs, 2 significant
    /// digits: enough for a per-second p50/p99, and small enough to keep one per second).
    pub latency: Histogram<u32>,
}

impl Second {
    fn new() -> Self {
        Self {
            sent: 0,
            outcomes: Outcomes::default(),
            latency: Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 2)
                .expect("constant histogram bounds are valid"),
        }
    }

    fn merge(&mut self, other: &Second) {
        self.sent += other.sent;
        self.outcomes.add(&other.outcomes);
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Requests sent (each answered, failed or timed out).
    pub requests: u64,
    /// From the start signal until the last request ended.
    pub elapsed: Duration,
    /// Wall-clock time of the start signal.
    pub started_at: SystemTime,
    /// Latency of every answered request, in microseconds.
    pub histogram: Histogram<u64>,
    /// Of those, the answers that were not an error status (the buys served), and the
    /// error statuses (4xx, 5xx: e.g. an overloaded server's fast 503s).
    pub accepted: Histogram<u64>,
    pub refused: Histogram<u64>,
    /// Open loop: how late each request was sent after its intended time, in
    /// microseconds (empty in a closed loop).
    pub send_lag: Histogram<u64>,
    pub outcomes: Outcomes,
    /// Distinct user ids answered `ordered`, sorted.
    pub ordered_users: Vec<u64>,
    /// Every measured buyer (when requests carry user ids), in send order.
    pub buyers: Vec<Buyer>,
    /// Each client's first send, in microseconds since the start, ascending.
    pub first_sends_us: Vec<u64>,
    /// Second `i` holds the requests that ended in `[i, i + 1)` s after the start.
    pub timeline: Vec<Second>,
}

/// A fresh latency histogram (microseconds, 1 µs .. 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("constant histogram bounds are valid")
}

enum Gate {
    Wait,
    Go(Instant),
    Abort,
}

pub(crate) struct Shared {
    target: Target,
    /// The `Host` header (hyper engine).
    host: HeaderValue,
    /// The request bytes (own engine).
    request: RequestTemplate,
    /// `GET /healthz` on the target's origin, which warms a connection (`start_together`).
    warm_target: Target,
    warm_request: RequestTemplate,
    start_together: bool,
    addr: SocketAddr,
    timeout: Duration,
    stop: Stop,
    pace: Pace,
    concurrency: u64,
    user_start: u64,
    next_user: AtomicU64,
    issued: AtomicU64,
    /// Open loop: the next request of the schedule no client has taken yet.
    next_due: AtomicU64,
    warm_user: AtomicU64,
    warmup_until: Option<Instant>,
    keep_order_ids: bool,
    counters: Arc<Counters>,
}

/// What a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// The target's buy for this user id.
    Buy(u64),
    /// `GET /healthz` on the target's origin, to warm the connection.
    Warm,
}

impl Shared {
    /// The bytes of `request` into `out` (own engine).
    fn render(&self, request: Request, out: &mut Vec<u8>) {
        match request {
            Request::Buy(user) => self.request.render(user, out),
            Request::Warm => self.warm_request.render(0, out),
        }
    }

    /// The request target of `request` (hyper engine).
    fn request_uri(&self, request: Request) -> ::hyper::Uri {
        match request {
            Request::Buy(user) => self.target.request_uri(user),
            Request::Warm => self.warm_target.request_uri(0),
        }
    }
}

/// One client's HTTP connection, as the loops use it. `attempt` makes one request,
/// (re)connecting as needed; the caller bounds it with the request's deadline.
pub(crate) trait Connection: Sized {
    fn new(shared: &Shared) -> Self;
    async fn connect(&mut self, shared: &Shared) -> Result<(), ()>;
    async fn attempt(&mut self, shared: &Shared, request: Request) -> Answer;
    fn close(&mut self);
    /// Requests written again so far on this client (after a connection found closed
    /// while idle); the buyer's `sends` is one more than its share of these.
    fn resends(&self) -> u64 {
        0
    }
}

/// Runs the plan. `before_measure` runs once every client is connected and warmed up,
/// before the clock starts (the sale reset goes there); if it fails, nothing is measured.
pub async fn run<F, Fut>(
    plan: &Plan,
    counters: Arc<Counters>,
    before_measure: F,
) -> Result<RunResult, LoadtestError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), LoadtestError>>,
{
    plan.validate()?;
    let host =
        HeaderValue::from_str(&plan.target.authority).map_err(|e| LoadtestError::BadUrl {
            url: plan.target.url.clone(),
            reason: format!("host is not a valid header value: {e}"),
        })?;
    let warm_target = Target::parse(&format!("{}/healthz", plan.target.origin), false)?;
    let shared = Arc::new(Shared {
        target: plan.target.clone(),
        host,
        request: RequestTemplate::new(&plan.target),
        warm_request: RequestTemplate::new(&warm_target),
        warm_target,
        start_together: plan.start_together,
        addr: plan.addr,
        timeout: plan.timeout,
        stop: plan.stop,
        pace: plan.pace.clone(),
        concurrency: plan.concurrency as u64,
        user_start: plan.user_start,
        next_user: AtomicU64::new(plan.user_start),
        issued: AtomicU64::new(0),
        next_due: AtomicU64::new(0),
        warm_user: AtomicU64::new(WARMUP_USER_BASE),
        warmup_until: plan.warmup.map(|w| Instant::now() + w),
        keep_order_ids: plan.keep_order_ids,
        counters,
    });
    let (gate_tx, gate_rx) = watch::channel(Gate::Wait);
    let ready = Arc::new(Barrier::new(plan.concurrency + 1));
    // One single-threaded runtime per core, clients dealt round-robin: a client and its
    // connection never hop between threads (as wrk's per-thread event loops).
    let threads = plan.threads().min(plan.concurrency);
    let mut runtimes = Vec::with_capacity(threads);
    for _ in 0..threads {
        runtimes.push(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LoadtestError::Runtime(e.to_string()))?,
        );
    }
    let mut parts = Vec::with_capacity(threads);
    for (t, runtime) in runtimes.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let (shared, ready, gate_rx) = (shared.clone(), ready.clone(), gate_rx.clone());
        let concurrency = plan.concurrency;
        let engine = plan.engine;
        std::thread::Builder::new()
            .name(format!("loadtest-{t}"))
            .spawn(move || {
                // The clients of one thread share one histogram (a histogram is ~360 KB:
                // one per client would not stay in cache), hence local, `!Send` tasks.
                let results = Rc::new(RefCell::new(ClientResult::new()));
                let local = LocalSet::new();
                local.block_on(&runtime, async {
                    let mut clients = JoinSet::new();
                    for _ in (t..concurrency).step_by(threads) {
                        let args = (
                            shared.clone(),
                            ready.clone(),
                            gate_rx.clone(),
                            results.clone(),
                        );
                        match engine {
                            Engine::Own => clients.spawn_local(client::<own::OwnConn>(args)),
                            Engine::Hyper => clients.spawn_local(client::<hyper::HyperConn>(args)),
                        };
                    }
                    // A client never panics by design; if one did, its work is lost, not
                    // the run.
                    while clients.join_next().await.is_some() {}
                });
                drop(local);
                let merged = Rc::try_unwrap(results)
                    .map_or_else(|_| ClientResult::new(), RefCell::into_inner);
                let _ = tx.send(merged);
            })
            .map_err(|e| LoadtestError::Runtime(e.to_string()))?;
        parts.push(rx);
    }
    ready.wait().await;

    if let Err(e) = before_measure().await {
        let _ = gate_tx.send(Gate::Abort);
        for part in parts {
            let _ = part.await;
        }
        return Err(e);
    }
    let start = Instant::now();
    let started_at = SystemTime::now();
    let _ = gate_tx.send(Gate::Go(start));

    let mut all = ClientResult::new();
    for part in parts {
        if let Ok(part) = part.await {
            all.merge(part);
        }
    }
    let ClientResult {
        histogram,
        accepted,
        refused,
        send_lag,
        outcomes,
        mut ordered_users,
        mut buyers,
        mut first_sends_us,
        timeline,
        ..
    } = all;
    let elapsed = start.elapsed();
    ordered_users.sort_unstable();
    ordered_users.dedup();
    buyers::sort_by_send(&mut buyers);
    first_sends_us.sort_unstable();
    Ok(RunResult {
        requests: outcomes.total(),
        elapsed,
        started_at,
        histogram,
        accepted,
        refused,
        send_lag,
        outcomes,
        ordered_users,
        buyers,
        first_sends_us,
        timeline,
    })
}

struct ClientResult {
    histogram: Histogram<u64>,
    accepted: Histogram<u64>,
    refused: Histogram<u64>,
    send_lag: Histogram<u64>,
    outcomes: Outcomes,
    ordered_users: Vec<u64>,
    buyers: Vec<Buyer>,
    first_sends_us: Vec<u64>,
    timeline: Vec<Second>,
    pending_done: u64,
    pending_errors: u64,
}

/// Requests a client counts locally before publishing to the live counters.
const COUNTER_BATCH: u64 = 32;

impl ClientResult {
    fn new() -> Self {
        Self {
            histogram: new_histogram(),
            accepted: new_histogram(),
            refused: new_histogram(),
            send_lag: new_histogram(),
            outcomes: Outcomes::default(),
            ordered_users: Vec::new(),
            buyers: Vec::new(),
            first_sends_us: Vec::new(),
            timeline: Vec::new(),
            pending_done: 0,
            pending_errors: 0,
        }
    }

    fn merge(&mut self, other: ClientResult) {
        for (mine, theirs) in [
            (&mut self.histogram, &other.histogram),
            (&mut self.accepted, &other.accepted),
            (&mut self.refused, &other.refused),
            (&mut self.send_lag, &other.send_lag),
        ] {
            mine.add(theirs).expect("histograms share bounds");
        }
        self.outcomes.add(&other.outcomes);
        self.ordered_users.extend(other.ordered_users);
        self.buyers.extend(other.buyers);
        self.first_sends_us.extend(other.first_sends_us);
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize_with(other.timeline.len(), Second::new);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            mine.merge(theirs);
        }
    }

    /// Records one finished request (`start`: the run's start).
    fn record(&mut self, shared: &Shared, done: Done, start: Instant) {
        let Done {
            answer,
            user,
            sends,
            intended,
            sent_at,
            end,
        } = done;
        let outcome = answer.outcome;
        if shared.pace.is_open() {
            self.send_lag
                .saturating_record(micros(sent_at.saturating_duration_since(intended)));
        }
        // From the intended send time: in the open loop, time spent queued behind a slow
        // answer counts (coordinated omission); in the closed loop it is the send time.
        let latency = end.saturating_duration_since(intended);
        self.outcomes.record(outcome);
        let at = |instant: Instant| instant.saturating_duration_since(start);
        let sent_second = at(sent_at).as_secs() as usize;
        let second = at(end).as_secs() as usize;
        if second.max(sent_second) >= self.timeline.len() {
            self.timeline
                .resize_with(second.max(sent_second) + 1, Second::new);
        }
        self.timeline[sent_second].sent += 1;
        let bucket = &mut self.timeline[second];
        bucket.outcomes.record(outcome);
        if outcome.answered() {
            let us = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            self.histogram.saturating_record(us);
            bucket.latency.saturating_record(us);
            if outcome.is_error() {
                self.refused.saturating_record(us);
            } else {
                self.accepted.saturating_record(us);
            }
        }
        // Who bought: the id the answer names, else the id sent.
        if outcome == Outcome::Ordered
            && let Some(buyer) = answer.user.or(user)
        {
            self.ordered_users.push(buyer);
        }
        if let Some(user) = user {
            self.buyers.push(Buyer {
                user,
                first_send_us: micros(at(sent_at)),
                sends,
                outcome,
                status: answer.status,
                order_id: answer.order_id,
            });
        }
        // The live counters are shared between threads: update them in batches, not
        // once per request, so the progress line costs the hot loop nothing.
        self.pending_done += 1;
        if outcome.is_error() {
            self.pending_errors += 1;
        }
        // Slow answers are rare enough to publish at once, so a slow run's progress
        // line moves request by request.
        if self.pending_done >= COUNTER_BATCH || latency >= Duration::from_millis(1) {
            self.flush(shared);
        }
    }

    /// Records a client's first send.
    fn first_send(&mut self, sent_at: Instant, start: Instant) {
        self.first_sends_us
            .push(micros(sent_at.saturating_duration_since(start)));
    }

    fn flush(&mut self, shared: &Shared) {
        shared.counters.done.fetch_add(self.pending_done, Relaxed);
        shared
            .counters
            .errors
            .fetch_add(self.pending_errors, Relaxed);
        self.pending_done = 0;
        self.pending_errors = 0;
    }
}

/// A connection with its request deadline timer.
struct Client<C> {
    conn: C,
    /// The request deadline timer, re-armed lazily (see `exchange`).
    timer: Pin<Box<Sleep>>,
    /// Whether this client has sent a measured request yet.
    sent_any: bool,
}

/// One request as the loops hand it to the results.
struct Done {
    answer: Answer,
    /// The user id sent, when requests carry user ids (so the request is a buyer).
    user: Option<u64>,
    sends: u32,
    /// When the request was due (open loop) or sent (closed loop): latency runs from here.
    intended: Instant,
    sent_at: Instant,
    end: Instant,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl<C: Connection> Client<C> {
    /// One request with its deadline: the answer, and how many times it was written.
    ///
    /// The timer is not re-armed per request (that is a timer-wheel update each time):
    /// it keeps an earlier deadline, and only when it fires is it moved to the current
    /// request's deadline. It never fires later than the current deadline.
    async fn exchange(&mut self, shared: &Shared, request: Request, now: Instant) -> (Answer, u32) {
        let deadline = tokio::time::Instant::from_std(now) + shared.timeout;
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        let resends_before = self.conn.resends();
        let answer = {
            let mut timer = self.timer.as_mut();
            let mut attempt = std::pin::pin!(self.conn.attempt(shared, request));
            loop {
                tokio::select! {
                    biased;
                    answer = &mut attempt => break Some(answer),
                    () = timer.as_mut() => {
                        if timer.deadline() >= deadline {
                            break None;
                        }
                        timer.as_mut().reset(deadline);
                    }
                }
            }
        };
        let sends = 1 + (self.conn.resends() - resends_before) as u32;
        let answer = answer.unwrap_or_else(|| {
            // The answer may still arrive on this connection; start clean instead.
            self.conn.close();
            Answer::failed(Outcome::Timeout)
        });
        (answer, sends)
    }

    /// Sends `user`'s buy now and records it; `intended`: when it was due (open loop),
    /// else now.
    async fn buy(
        &mut self,
        shared: &Shared,
        results: &RefCell<ClientResult>,
        user: u64,
        intended: Option<Instant>,
        start: Instant,
    ) {
        let sent_at = Instant::now();
        if !self.sent_any {
            self.sent_any = true;
            results.borrow_mut().first_send(sent_at, start);
        }
        let (answer, sends) = self.exchange(shared, Request::Buy(user), sent_at).await;
        let done = Done {
            answer,
            user: shared.target.with_user_ids().then_some(user),
            sends,
            intended: intended.unwrap_or(sent_at),
            sent_at,
            end: Instant::now(),
        };
        results.borrow_mut().record(shared, done, start);
    }
}

type ClientArgs = (
    Arc<Shared>,
    Arc<Barrier>,
    watch::Receiver<Gate>,
    Rc<RefCell<ClientResult>>,
);

async fn client<C: Connection>((shared, ready, mut gate, results): ClientArgs) {
    let mut client = Client {
        conn: C::new(&shared),
        timer: Box::pin(tokio::time::sleep(shared.timeout)),
        sent_any: false,
    };
    // Connect before the clock starts; a failure here shows up as the first request's
    // connect error.
    let _ = tokio::time::timeout(shared.timeout, client.conn.connect(&shared)).await;
    if shared.start_together {
        // An answer on this connection means the server has accepted it; whatever the
        // answer, the connection is then as warm as it gets.
        client
            .exchange(&shared, Request::Warm, Instant::now())
            .await;
    }
    if let Some(until) = shared.warmup_until {
        while Instant::now() < until {
            let user = shared.warm_user.fetch_add(1, Relaxed);
            client
                .exchange(&shared, Request::Buy(user), Instant::now())
                .await;
        }
    }
    ready.wait().await;
    let start = match gate.wait_for(|g| !matches!(g, Gate::Wait)).await.as_deref() {
        Ok(Gate::Go(start)) => *start,
        _ => return,
    };
    match shared.pace.open_total(shared.stop, shared.concurrency) {
        None => closed_loop(&shared, &mut client, &results, start).await,
        Some(total) => open_loop(&shared, &mut client, &results, start, total).await,
    }
    results.borrow_mut().flush(&shared);
    client.conn.close();
}

async fn closed_loop<C: Connection>(
    shared: &Shared,
    client: &mut Client<C>,
    results: &RefCell<ClientResult>,
    start: Instant,
) {
    let mut sent = 0u64;
    loop {
        let go = match shared.stop {
            Stop::Repetitions(r) => sent < r,
            Stop::Requests(n) => shared.issued.fetch_add(1, Relaxed) < n,
            Stop::Duration(d) => start.elapsed() < d,
        };
        if !go {
            break;
        }
        sent += 1;
        let user = shared.next_user.fetch_add(1, Relaxed);
        client.buy(shared, results, user, None, start).await;
    }
}

async fn open_loop<C: Connection>(
    shared: &Shared,
    client: &mut Client<C>,
    results: &RefCell<ClientResult>,
    start: Instant,
    total: u64,
) {
    // Not wrk2's fixed share (client k sends k, k + c, ...): there a request due while its
    // client waits on a slow answer is sent late although other connections are free.
    loop {
        let i = shared.next_due.fetch_add(1, Relaxed);
        if i >= total {
            break;
        }
        let intended = start + shared.pace.due(i);
        tokio::time::sleep_until(intended.into()).await;
        client
            .buy(
                shared,
                results,
                shared.user_start + i,
                Some(intended),
                start,
            )
            .await;
    }
}
