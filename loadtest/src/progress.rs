//! The live progress line: requests done, current rate, errors.
//!
//! Shown only on a terminal (stderr) and not with `--quiet`, so logs and CI output stay
//! clean. It reads the engine's atomic counters from its own task and never touches the
//! hot loop.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

use crate::engine::Counters;

const TICK: Duration = Duration::from_millis(250);

/// A running progress line; `finish` clears it.
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the line for a run of `total` requests (unknown for timed runs).
    pub fn start(label: &str, counters: Arc<Counters>, total: Option<u64>, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let (bar, template) = match total {
            Some(n) => (
                ProgressBar::new(n),
                "{spinner} {prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {prefix} [{elapsed_precise}] {pos} requests {msg}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_string());
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(TICK).await;
                let done = counters.done.load(Relaxed);
                let errors = counters.errors.load(Relaxed);
                let now = Instant::now();
                let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, done);
                shown.set_position(done);
                shown.set_message(format!("{rate:.0} req/s, {errors} errors"));
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }

    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}
