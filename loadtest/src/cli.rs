//! Command-line options. Every option is also an environment variable
//! (`FLASHSALE_` + the option in upper snake case), like the other binaries, so docker
//! compose and scripts configure it the same way. The admin token is never printed.
//!
//! The options of a measured run that `run` and `matrix` share are declared once
//! ([`CommonOpts`], flattened into both); the matrix's stack dimensions are typed, so clap
//! refuses a bad value before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::check::{Check, parse_check};
use crate::dimensions::{Gate, QueueType, Skip, Store, parse_skip};
use crate::duration::parse_duration;
use crate::engine::Engine;
use crate::marks::{Mark, parse_mark};
use crate::stages::{Stages, parse_stages};

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator and report tool for the flash-sale service"
)]
pub struct Opts {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive one URL (closed or open loop) and write a JSON, Markdown and HTML report.
    Run(RunOpts),
    /// Print (and optionally write) one side-by-side table of several reports.
    Compare(CompareOpts),
    /// Merge reports from several load machines (HDR histogram merge) into one.
    Merge(MergeOpts),
    /// The original experiment in one command: strategies x routes x concurrency.
    Matrix(MatrixOpts),
}

/// What every measured run takes, whether alone (`run`) or as a matrix row.
#[derive(Debug, Clone, Args)]
pub struct CommonOpts {
    /// Admin token: the sale is reset (stock, strategy) before each run (`matrix` needs it).
    #[arg(long, env = "FLASHSALE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Stock to reset the sale to (with --admin-token).
    #[arg(long, env = "FLASHSALE_STOCK", default_value_t = 100)]
    pub stock: u64,

    /// Directory for the reports.
    #[arg(long, env = "FLASHSALE_OUT", default_value = "results")]
    pub out: PathBuf,

    /// Per-request timeout in milliseconds (connect included).
    #[arg(long, env = "FLASHSALE_TIMEOUT_MS", default_value_t = 30_000)]
    pub timeout_ms: u64,

    /// First user id; each request carries the next distinct id as `user=<id>` (a matrix:
    /// in every row, the sale being reset between rows).
    #[arg(long, env = "FLASHSALE_USER_START", default_value_t = 1)]
    pub user_start: u64,

    /// Longest wait for the store to settle after a run, in milliseconds.
    #[arg(long, env = "FLASHSALE_DRAIN_TIMEOUT_MS", default_value_t = 60_000)]
    pub drain_timeout_ms: u64,

    /// Interval between the `/sale` reads that decide the store has settled (two equal
    /// order counts in a row), in milliseconds.
    #[arg(long, env = "FLASHSALE_DRAIN_INTERVAL_MS", default_value_t = 250)]
    pub drain_interval_ms: u64,

    /// Generator threads (each a single-threaded runtime); 0 means one per core.
    #[arg(long, env = "FLASHSALE_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// HTTP engine of the hot loop: `own` (a lean HTTP/1.1 client) or `hyper` (the
    /// reference).
    #[arg(long, env = "FLASHSALE_ENGINE", value_enum, default_value_t = Engine::Own)]
    pub engine: Engine,

    /// A pass/fail check, repeatable (a matrix: on every run of every row): `oversold==0`,
    /// `lost==0`, `p99<250ms`, `errors<=0.1%`, `rps>=1000`, `fcfs_precision>=0.9`,
    /// `inversions<=0.1` (operators < <= > >= == !=). A failed check makes the exit code 3.
    #[arg(long = "check", env = "FLASHSALE_CHECK", value_parser = parse_check, value_delimiter = ',')]
    pub checks: Vec<Check>,

    /// After resetting the sale, sell the whole stock (buyers from 2^41 on) before the
    /// clock starts, then measure: the "after sell-out" scenario. Needs --admin-token.
    #[arg(long, env = "FLASHSALE_SOLD_OUT_FIRST")]
    pub sold_out_first: bool,

    /// Scrape this Prometheus text endpoint before and after every run and put the
    /// counter increases and gauge values in the report (repeatable).
    #[arg(long = "metrics", env = "FLASHSALE_METRICS", value_delimiter = ',')]
    pub metrics: Vec<String>,

    /// A sale that opens at once (closed loop): every connection is opened and warmed with
    /// one `GET /healthz` before the clock starts, then every client's first buy is
    /// released at one instant; the report says how spread the first sends were.
    #[arg(long, env = "FLASHSALE_START_TOGETHER")]
    pub start_together: bool,

    /// No progress line.
    #[arg(short = 'q', long, env = "FLASHSALE_QUIET")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunOpts {
    /// Full URL to drive, e.g. http://127.0.0.1:5000/http/buy
    #[arg(env = "FLASHSALE_URL")]
    pub url: String,

    #[command(flatten)]
    pub common: CommonOpts,

    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(
        short = 'c',
        long,
        env = "FLASHSALE_CONCURRENCY",
        default_value_t = 100
    )]
    pub concurrency: usize,

    /// Requests per client (siege's -r). Default 10 when neither -n nor -t is given.
    #[arg(short = 'r', long, env = "FLASHSALE_REPETITIONS", conflicts_with_all = ["requests", "duration"])]
    pub repetitions: Option<u64>,

    /// Requests in total.
    #[arg(
        short = 'n',
        long,
        env = "FLASHSALE_REQUESTS",
        conflicts_with = "duration"
    )]
    pub requests: Option<u64>,

    /// Send for this long (e.g. 10s, 500ms, 2m; a bare number is seconds).
    #[arg(short = 't', long, env = "FLASHSALE_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Open loop: this many requests per second on a fixed schedule; latency is measured
    /// from each request's intended send time (coordinated omission corrected).
    #[arg(long, env = "FLASHSALE_RATE", conflicts_with = "start_together")]
    pub rate: Option<f64>,

    /// Open loop with a piecewise-linear rate, as k6's ramping-arrival-rate: `TIME:RATE`
    /// points from 0s, e.g. `0s:0,1s:20000,10s:20000,12s:0`; the run lasts until the last
    /// point. Latency from each request's intended send time, as with --rate.
    #[arg(long, env = "FLASHSALE_STAGES", value_parser = parse_stages,
          conflicts_with_all = ["rate", "repetitions", "requests", "duration", "start_together"])]
    pub stages: Option<Stages>,

    /// Warm up the connections and the server this long before the sale reset and the
    /// measurement (warm-up buyers use ids from 2^40 on).
    #[arg(long, env = "FLASHSALE_WARMUP", value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// Send the URL as given, without `user=<id>`.
    #[arg(long, env = "FLASHSALE_NO_USER_IDS")]
    pub no_user_ids: bool,

    /// Strategy to reset the sale to (with --admin-token), passed to the admin API as is:
    /// count-insert, conditional, row-lock, ...
    #[arg(long, env = "FLASHSALE_STRATEGY", default_value = "count-insert")]
    pub strategy: String,

    /// Report name: files are <out>/<label>.json, .md and .html. Default: <route>-c<c>.
    #[arg(long, env = "FLASHSALE_LABEL")]
    pub label: Option<String>,

    /// Route name in the report. Default: from the URL path (http, mq, default).
    #[arg(long, env = "FLASHSALE_ROUTE")]
    pub route: Option<String>,

    /// A marker on the timeline, repeatable: "12s: node 2 killed" (offset from the start).
    #[arg(long = "mark", env = "FLASHSALE_MARK", value_parser = parse_mark)]
    pub marks: Vec<Mark>,

    /// A file of markers a script appends to while the run goes on, one per line:
    /// `<unix epoch seconds, fractional allowed> <text>` (e.g. `echo "$(date +%s.%N) node 2
    /// killed" >> marks`); read when the run ends.
    #[arg(long, env = "FLASHSALE_MARKS_FILE")]
    pub marks_file: Option<PathBuf>,

    /// Write every buyer to this file as JSON Lines, in send order: `{"user", "first_send_us",
    /// "sends", "outcome", "order_id", "status"}` (outcome: the buyer's last answer).
    #[arg(long, env = "FLASHSALE_BUYERS_OUT")]
    pub buyers_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CompareOpts {
    /// Reports to compare (run, merge or matrix JSON).
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,

    /// Also write the table as Markdown to this file.
    #[arg(long, env = "FLASHSALE_MARKDOWN")]
    pub markdown: Option<PathBuf>,

    /// Also write one self-contained HTML page with the table and the two reports side by
    /// side (exactly two reports).
    #[arg(long, env = "FLASHSALE_HTML")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct MergeOpts {
    /// Run reports of one test driven from several load machines at once.
    #[arg(required = true, num_args = 2..)]
    pub reports: Vec<PathBuf>,

    /// Name of the merged report.
    #[arg(long, env = "FLASHSALE_LABEL", default_value = "merged")]
    pub label: String,

    /// Directory for the merged report.
    #[arg(long, env = "FLASHSALE_OUT", default_value = "results")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct MatrixOpts {
    /// The front tier's origin, e.g. http://127.0.0.1:5000
    #[arg(env = "FLASHSALE_TARGET")]
    pub target: String,

    #[command(flatten)]
    pub common: CommonOpts,

    /// Name of the combined report: <out>/<label>.json, .md, .html and SVG plots.
    #[arg(long, env = "FLASHSALE_LABEL", default_value = "matrix")]
    pub label: String,

    /// Concurrency levels (comma-separated).
    #[arg(
        long,
        env = "FLASHSALE_CONCURRENCY",
        value_delimiter = ',',
        default_value = "100,300,500"
    )]
    pub concurrency: Vec<usize>,

    /// Requests per client in every step (siege's -r). Default 10 unless -t is given.
    #[arg(
        long,
        short = 'r',
        env = "FLASHSALE_REPETITIONS",
        conflicts_with = "duration"
    )]
    pub repetitions: Option<u64>,

    /// Drive every step for this long instead of -r (e.g. 10s): the "every buy writes"
    /// scenario is `--stock 1000000 --concurrency 100 -t 10s`.
    #[arg(short = 't', long, env = "FLASHSALE_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Strategies (comma-separated), passed to the admin API as they are: count-insert,
    /// conditional, row-lock, ...
    #[arg(
        long,
        env = "FLASHSALE_STRATEGIES",
        value_delimiter = ',',
        default_value = "count-insert,conditional"
    )]
    pub strategies: Vec<String>,

    /// Routes (comma-separated): http, mq, or default (the front tier's /buy).
    #[arg(
        long,
        env = "FLASHSALE_ROUTES",
        value_delimiter = ',',
        default_value = "http,mq"
    )]
    pub routes: Vec<String>,

    /// Run every row this many times; the table shows the median and the min-max spread.
    #[arg(long, env = "FLASHSALE_REPEAT", default_value_t = 1)]
    pub repeat: u32,

    /// Worker batch sizes to measure (a stack dimension; needs --reconfigure for more
    /// than one value), e.g. 1,64.
    #[arg(long, env = "FLASHSALE_BATCH", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Vec<u32>,

    /// Front tier sold-out gate settings to measure (stack dimension): off,on.
    #[arg(long, env = "FLASHSALE_GATE", value_delimiter = ',', value_enum)]
    pub gate: Vec<Gate>,

    /// Worker process counts to measure (stack dimension), e.g. 1,2,4.
    #[arg(long, env = "FLASHSALE_WORKERS", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Vec<u32>,

    /// Request queue types to measure (stack dimension): classic,quorum.
    #[arg(long, env = "FLASHSALE_QUEUE_TYPE", value_delimiter = ',', value_enum)]
    pub queue_type: Vec<QueueType>,

    /// Stores to measure (stack dimension): sqlite,postgres,mongodb. Its variable is
    /// FLASHSALE_STORES: FLASHSALE_STORE is the services' store URL.
    #[arg(long, env = "FLASHSALE_STORES", value_delimiter = ',', value_enum)]
    pub store: Vec<Store>,

    /// Leave out every row matching all these pairs, repeatable:
    /// `--skip strategy=count-insert,gate=on` (keys: strategy, route, c, and the stack
    /// dimensions). A skip that matches no row is a usage error.
    #[arg(long = "skip", env = "FLASHSALE_SKIP", value_parser = parse_skip)]
    pub skip: Vec<Skip>,

    /// Command that reconfigures and restarts the stack, run with `sh -c` before each
    /// combination of the stack dimensions, with FLASHSALE_BATCH, FLASHSALE_SOLD_OUT_GATE,
    /// FLASHSALE_WORKERS, FLASHSALE_QUEUE_TYPE and FLASHSALE_STORE set to that combination
    /// (unset for a dimension not in use). It must exit 0; then TARGET/healthz must answer
    /// 200.
    #[arg(long, env = "FLASHSALE_RECONFIGURE")]
    pub reconfigure: Option<String>,

    /// Longest wait for TARGET/healthz to answer 200 after --reconfigure, in seconds.
    #[arg(long, env = "FLASHSALE_READY_TIMEOUT_S", default_value_t = 120)]
    pub ready_timeout_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(args: &[&str]) -> Result<MatrixOpts, clap::Error> {
        let argv = ["loadtest", "matrix", "http://frontend:5000"]
            .iter()
            .chain(args);
        match Opts::try_parse_from(argv)?.command {
            Command::Matrix(m) => Ok(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn matrix_defaults_are_the_original_experiment() {
        let m = matrix(&[]).unwrap();
        assert_eq!(m.concurrency, vec![100, 300, 500]);
        assert_eq!(m.repetitions, None);
        assert_eq!(m.duration, None);
        assert_eq!(m.repeat, 1);
        assert!(m.batch.is_empty() && m.gate.is_empty() && m.workers.is_empty());
        assert!(m.store.is_empty() && m.skip.is_empty());
        assert_eq!(m.common.stock, 100);
        assert_eq!(m.routes, vec!["http", "mq"]);
        assert_eq!(m.strategies, vec!["count-insert", "conditional"]);
        assert_eq!(m.common.out, PathBuf::from("results"));
        assert_eq!(m.label, "matrix");
    }

    #[test]
    fn stack_dimensions_take_only_their_values() {
        let m = matrix(&[
            "--gate",
            "off,on",
            "--store",
            "sqlite,postgres",
            "--batch",
            "1,64",
        ])
        .unwrap();
        assert_eq!(m.gate, [Gate::Off, Gate::On]);
        assert_eq!(m.store, [Store::Sqlite, Store::Postgres]);
        assert_eq!(m.batch, [1, 64]);
        for bad in [
            ["--gate", "maybe"],
            ["--batch", "0"],
            ["--workers", "two"],
            ["--queue-type", "lazy"],
            ["--store", "excel"],
        ] {
            assert!(matrix(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_skip_keeps_its_commas_and_repeats() {
        let m = matrix(&[
            "--skip",
            "strategy=count-insert,gate=on",
            "--skip",
            "route=mq",
        ])
        .unwrap();
        assert_eq!(m.skip.len(), 2);
        assert_eq!(m.skip[0].to_string(), "strategy=count-insert,gate=on");
        assert!(matrix(&["--skip", "colour=red"]).is_err());
    }

    #[test]
    fn start_together_is_for_the_closed_loop() {
        let run = |args: &[&str]| {
            let argv = ["loadtest", "run", "http://h:1/buy"].iter().chain(args);
            Opts::try_parse_from(argv).map(|_| ())
        };
        assert!(run(&["--start-together", "-c", "200", "-r", "1"]).is_ok());
        assert!(run(&["--start-together", "--rate", "100"]).is_err());
        assert!(run(&["--stages", "0s:0,1s:10", "--rate", "100"]).is_err());
        assert!(run(&["--stages", "0s:0,1s:10", "-n", "5"]).is_err());
        assert!(run(&["--stages", "0s:10,1s:-10"]).is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Opts::command().debug_assert();
    }
}
