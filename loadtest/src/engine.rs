//! The hot loop: concurrent clients, each on its own keep-alive HTTP/1 connection.
//!
//! Invariants:
//! - one hyper connection per client, reused across requests (reconnect only after the
//!   server closed it, a broken connection, or a timeout);
//! - every request has a deadline (`Plan::timeout`), connect included, so a run ends only
//!   when every request sent has been answered or has timed out: `run` joins all clients;
//! - the clock starts after every client has connected (and warmed up), and after the
//!   caller's `before_measure` step (the sale reset), so neither is measured;
//! - closed loop: a client sends its next request when the previous one is done;
//!   open loop: request `i` is due at `start + i / rate` and its latency is measured from
//!   that intended time, so a stalled server shows in the percentiles (coordinated
//!   omission corrected, as wrk2 does);
//! - each client keeps its own histogram and counts (no locks in the loop); they are
//!   merged at the end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};
use tokio::task::{AbortHandle, JoinSet};

use crate::error::LoadtestError;
use crate::outcome::{Outcome, Outcomes, classify};
use crate::target::Target;

/// Warm-up requests use user ids from here on, far from any run's ids, so a warm-up
/// order never collides with a measured buyer.
pub const WARMUP_USER_BASE: u64 = 1 << 40;

/// Highest latency the histogram tracks exactly (one hour, in microseconds).
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

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

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub stop: Stop,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// First user id of the measured requests.
    pub user_start: u64,
    pub warmup: Option<Duration>,
}

impl Plan {
    /// Requests the run will send, when known in advance.
    pub fn total_requests(&self) -> Option<u64> {
        match (self.stop, self.rate) {
            (Stop::Repetitions(r), _) => Some(r.saturating_mul(self.concurrency as u64)),
            (Stop::Requests(n), _) => Some(n),
            (Stop::Duration(d), Some(rate)) => Some((rate * d.as_secs_f64()).round() as u64),
            (Stop::Duration(_), None) => None,
        }
    }

    fn validate(&self) -> Result<(), LoadtestError> {
        let bad = |msg: &str| Err(LoadtestError::BadOptions(msg.to_string()));
        if self.concurrency == 0 {
            return bad("concurrency (-c) must be at least 1");
        }
        if self.timeout.is_zero() {
            return bad("--timeout-ms must be at least 1");
        }
        if let Some(rate) = self.rate
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
    pub outcomes: Outcomes,
    /// Distinct user ids answered `ordered`, sorted.
    pub ordered_users: Vec<u64>,
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

struct Shared {
    target: Target,
    host: HeaderValue,
    addr: SocketAddr,
    timeout: Duration,
    stop: Stop,
    rate: Option<f64>,
    concurrency: u64,
    user_start: u64,
    next_user: AtomicU64,
    issued: AtomicU64,
    warm_user: AtomicU64,
    warmup_until: Option<Instant>,
    counters: Arc<Counters>,
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
    let shared = Arc::new(Shared {
        target: plan.target.clone(),
        host,
        addr: plan.addr,
        timeout: plan.timeout,
        stop: plan.stop,
        rate: plan.rate,
        concurrency: plan.concurrency as u64,
        user_start: plan.user_start,
        next_user: AtomicU64::new(plan.user_start),
        issued: AtomicU64::new(0),
        warm_user: AtomicU64::new(WARMUP_USER_BASE),
        warmup_until: plan.warmup.map(|w| Instant::now() + w),
        counters,
    });
    let (gate_tx, gate_rx) = watch::channel(Gate::Wait);
    let ready = Arc::new(Barrier::new(plan.concurrency + 1));
    let mut clients = JoinSet::new();
    for index in 0..plan.concurrency {
        clients.spawn(client(
            shared.clone(),
            index as u64,
            ready.clone(),
            gate_rx.clone(),
        ));
    }
    ready.wait().await;

    if let Err(e) = before_measure().await {
        let _ = gate_tx.send(Gate::Abort);
        clients.join_all().await;
        return Err(e);
    }
    let start = Instant::now();
    let started_at = SystemTime::now();
    let _ = gate_tx.send(Gate::Go(start));

    let mut histogram = new_histogram();
    let mut outcomes = Outcomes::default();
    let mut ordered_users = Vec::new();
    while let Some(joined) = clients.join_next().await {
        // A client never panics by design; if one did, its work is lost, not the run.
        let Ok(part) = joined else { continue };
        histogram
            .add(&part.histogram)
            .expect("histograms share bounds");
        outcomes.add(&part.outcomes);
        ordered_users.extend(part.ordered_users);
    }
    let elapsed = start.elapsed();
    ordered_users.sort_unstable();
    ordered_users.dedup();
    Ok(RunResult {
        requests: outcomes.total(),
        elapsed,
        started_at,
        histogram,
        outcomes,
        ordered_users,
    })
}

struct ClientResult {
    histogram: Histogram<u64>,
    outcomes: Outcomes,
    ordered_users: Vec<u64>,
}

impl ClientResult {
    fn record(&mut self, shared: &Shared, outcome: Outcome, latency: Duration, user: Option<u64>) {
        self.outcomes.record(outcome);
        if outcome.answered() {
            let us = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            self.histogram.saturating_record(us);
        }
        if outcome == Outcome::Ordered
            && let Some(user) = user
        {
            self.ordered_users.push(user);
        }
        shared.counters.done.fetch_add(1, Relaxed);
        if outcome.is_error() {
            shared.counters.errors.fetch_add(1, Relaxed);
        }
    }
}

async fn client(
    shared: Arc<Shared>,
    index: u64,
    ready: Arc<Barrier>,
    mut gate: watch::Receiver<Gate>,
) -> ClientResult {
    let mut conn = Conn::default();
    // Connect before the clock starts; a failure here shows up as the first request's
    // connect error.
    let _ = tokio::time::timeout(shared.timeout, conn.connect(shared.addr)).await;
    if let Some(until) = shared.warmup_until {
        while Instant::now() < until {
            let user = shared.warm_user.fetch_add(1, Relaxed);
            conn.exchange(&shared, user).await;
        }
    }
    let mut result = ClientResult {
        histogram: new_histogram(),
        outcomes: Outcomes::default(),
        ordered_users: Vec::new(),
    };
    ready.wait().await;
    let start = match gate.wait_for(|g| !matches!(g, Gate::Wait)).await.as_deref() {
        Ok(Gate::Go(start)) => *start,
        _ => return result,
    };
    match shared.rate {
        None => closed_loop(&shared, &mut conn, &mut result, start).await,
        Some(rate) => open_loop(&shared, &mut conn, &mut result, start, index, rate).await,
    }
    conn.close();
    result
}

async fn closed_loop(shared: &Shared, conn: &mut Conn, result: &mut ClientResult, start: Instant) {
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
        let sent_at = Instant::now();
        let (outcome, named) = conn.exchange(shared, user).await;
        result.record(
            shared,
            outcome,
            sent_at.elapsed(),
            buyer(shared, named, user),
        );
    }
}

async fn open_loop(
    shared: &Shared,
    conn: &mut Conn,
    result: &mut ClientResult,
    start: Instant,
    index: u64,
    rate: f64,
) {
    let total = match shared.stop {
        Stop::Repetitions(r) => r.saturating_mul(shared.concurrency),
        Stop::Requests(n) => n,
        Stop::Duration(d) => (rate * d.as_secs_f64()).round() as u64,
    };
    // Client k owns requests k, k + c, k + 2c, ... of one global schedule, as wrk2 does.
    let mut i = index;
    while i < total {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(intended.into()).await;
        let user = shared.user_start + i;
        let (outcome, named) = conn.exchange(shared, user).await;
        // From the intended send time: time spent queued behind a slow answer counts.
        result.record(
            shared,
            outcome,
            intended.elapsed(),
            buyer(shared, named, user),
        );
        i += shared.concurrency;
    }
}

/// Who bought: the id the answer names, else the id sent (when ids are sent at all).
fn buyer(shared: &Shared, named: Option<u64>, sent: u64) -> Option<u64> {
    named.or(shared.target.with_user_ids().then_some(sent))
}

/// One client's connection; `None` until connected or after it was dropped.
#[derive(Default)]
struct Conn {
    sender: Option<SendRequest<Empty<Bytes>>>,
    driver: Option<AbortHandle>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

impl Conn {
    async fn connect(&mut self, addr: SocketAddr) -> Result<(), ()> {
        self.close();
        let stream = TcpStream::connect(addr).await.map_err(drop)?;
        // Small requests and answers: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(drop)?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        self.driver = Some(driver.abort_handle());
        Ok(())
    }

    fn close(&mut self) {
        self.sender = None;
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }

    /// One request with its deadline. Returns the outcome and the user id the answer named.
    async fn exchange(&mut self, shared: &Shared, user: u64) -> (Outcome, Option<u64>) {
        match tokio::time::timeout(shared.timeout, self.attempt(shared, user)).await {
            Ok(answer) => answer,
            Err(_) => {
                // The answer may still arrive on this connection; start clean instead.
                self.close();
                (Outcome::Timeout, None)
            }
        }
    }

    async fn attempt(&mut self, shared: &Shared, user: u64) -> (Outcome, Option<u64>) {
        // A kept-alive connection the server has since closed is not an error: reconnect.
        let usable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable && self.connect(shared.addr).await.is_err() {
            return (Outcome::ConnectError, None);
        }
        let Some(sender) = self.sender.as_mut() else {
            return (Outcome::ConnectError, None);
        };
        if sender.ready().await.is_err() {
            self.close();
            return (Outcome::IoError, None);
        }
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = shared.target.request_uri(user);
        request.headers_mut().insert(HOST, shared.host.clone());
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(_) => {
                self.close();
                return (Outcome::IoError, None);
            }
        };
        let status = response.status().as_u16();
        match response.into_body().collect().await {
            Ok(body) => classify(status, &body.to_bytes()),
            Err(_) => {
                self.close();
                (Outcome::IoError, None)
            }
        }
    }
}
