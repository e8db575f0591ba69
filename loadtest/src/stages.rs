//! Arrival-rate stages for the open loop (`--stages 0s:0,1s:20000,10s:20000,12s:0`): the
//! rate is piecewise linear between the points, as in k6's ramping-arrival-rate.
//!
//! Request `i` (from 0) is due at the instant `t` where the arrivals so far, `N(t)` (the
//! integral of the rate), reach `i`; so a stage at a constant rate `R` spaces requests
//! `1/R` apart, exactly as `--rate R` does, and a ramp spaces them ever closer. The run
//! sends `ceil(N(end))` requests. A leaf module.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;

/// One point: at `t_s` seconds from the start, the rate is `rate` requests per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub t_s: f64,
    pub rate: f64,
}

/// Validated stages: at least two points, the first at 0 s, times increasing, rates finite
/// and not negative, some arrivals in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    points: Vec<Stage>,
    /// `N` at each point.
    cumulative: Vec<f64>,
}

/// For clap: `--stages 0s:0,1s:20000,...`.
pub fn parse_stages(s: &str) -> Result<Stages, String> {
    let bad = |why: String| {
        format!("bad stages `{s}`: {why} (write TIME:RATE,..., e.g. 0s:0,1s:20000,10s:20000,12s:0)")
    };
    let mut points = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (t, rate) = part
            .split_once(':')
            .ok_or_else(|| bad(format!("`{part}` has no `:`")))?;
        let t = parse_duration(t).map_err(bad)?.as_secs_f64();
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| bad(format!("`{rate}` is not a rate")))?;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(bad(format!("rate `{rate}` must be a number of at least 0")));
        }
        points.push(Stage { t_s: t, rate });
    }
    Stages::new(points).map_err(bad)
}

impl Stages {
    pub fn new(points: Vec<Stage>) -> Result<Self, String> {
        if points.len() < 2 {
            return Err("give at least two points".into());
        }
        if points[0].t_s != 0.0 {
            return Err("the first point must be at 0s".into());
        }
        if points.windows(2).any(|w| w[1].t_s <= w[0].t_s) {
            return Err("times must increase".into());
        }
        let mut cumulative = vec![0.0];
        for w in points.windows(2) {
            let n = cumulative.last().copied().unwrap_or(0.0);
            cumulative.push(n + (w[0].rate + w[1].rate) / 2.0 * (w[1].t_s - w[0].t_s));
        }
        if cumulative.last().copied().unwrap_or(0.0) < 1.0 {
            return Err("the stages send no request".into());
        }
        Ok(Self { points, cumulative })
    }

    pub fn points(&self) -> &[Stage] {
        &self.points
    }

    /// From the first point to the last.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.points.last().map_or(0.0, |p| p.t_s))
    }

    /// Requests the stages send.
    pub fn total(&self) -> u64 {
        let n = self.cumulative.last().copied().unwrap_or(0.0);
        (n - 1e-9).ceil().max(0.0) as u64
    }

    /// `N(t)`: requests due in `[0, t)` (fractional).
    pub fn arrivals_until(&self, t: f64) -> f64 {
        let end = self.points.len() - 1;
        if t >= self.points[end].t_s {
            return self.cumulative[end];
        }
        let k = self
            .points
            .partition_point(|p| p.t_s <= t)
            .saturating_sub(1);
        let (p, q) = (self.points[k], self.points[k + 1]);
        let s = (t - p.t_s).max(0.0);
        let slope = (q.rate - p.rate) / (q.t_s - p.t_s);
        self.cumulative[k] + p.rate * s + slope * s * s / 2.0
    }

    /// When request `i` (from 0) is due, from the start.
    pub fn offset(&self, i: u64) -> Duration {
        let x = i as f64;
        // The segment whose arrivals cover x (segments without arrivals are skipped).
        let k = self
            .cumulative
            .partition_point(|n| *n <= x)
            .saturating_sub(1)
            .min(self.points.len() - 2);
        let (p, q) = (self.points[k], self.points[k + 1]);
        let within = x - self.cumulative[k];
        let slope = (q.rate - p.rate) / (q.t_s - p.t_s);
        // Solves rate·s + slope·s²/2 = within for s, in the form that stays exact when
        // the slope is 0 or negative.
        let root = (p.rate * p.rate + 2.0 * slope * within).max(0.0).sqrt();
        let s = if within <= 0.0 {
            0.0
        } else {
            2.0 * within / (p.rate + root)
        };
        Duration::from_secs_f64(p.t_s + s.clamp(0.0, q.t_s - p.t_s))
    }
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .points
            .iter()
            .map(|p| format!("{}s:{}", p.t_s, p.rate))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_and_say_what_is_wrong() {
        let s = parse_stages("0s:0, 1s:20000,10s:20000,12s:0").unwrap();
        assert_eq!(s.points().len(), 4);
        assert_eq!(s.duration(), Duration::from_secs(12));
        // 10,000 on the way up, 180,000 at the top, 20,000 on the way down.
        assert_eq!(s.total(), 210_000);
        assert_eq!(s.to_string(), "0s:0,1s:20000,10s:20000,12s:0");
        for (bad, says) in [
            ("1s:10,2s:10", "first point must be at 0s"),
            ("0s:10", "at least two"),
            ("0s:10,2s:10,1s:10", "increase"),
            ("0s:10,1s:-1", "at least 0"),
            ("0s:0,1s:0", "no request"),
            ("0s:10,1s", "no `:`"),
        ] {
            let err = parse_stages(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_constant_stage_spaces_requests_as_a_fixed_rate_does() {
        let s = parse_stages("0s:100,2s:100").unwrap();
        assert_eq!(s.total(), 200);
        for i in [0, 1, 57, 199] {
            let expected = i as f64 / 100.0;
            assert!((s.offset(i).as_secs_f64() - expected).abs() < 1e-9, "{i}");
        }
    }

    #[test]
    fn requests_are_due_where_the_arrivals_reach_them() {
        let s = parse_stages("0s:0,1s:1000,3s:1000,4s:0").unwrap();
        assert_eq!(s.total(), 3000);
        for i in [1, 10, 499, 500, 1800, 2500, 2999] {
            let t = s.offset(i).as_secs_f64();
            let n = s.arrivals_until(t);
            assert!((n - i as f64).abs() < 1e-6, "request {i} at {t}: N = {n}");
        }
        // Per second: half the rate on each ramp, the full rate in between.
        let per_second: Vec<f64> = (0..4)
            .map(|k| s.arrivals_until(k as f64 + 1.0) - s.arrivals_until(k as f64))
            .collect();
        assert_eq!(per_second, [500.0, 1000.0, 1000.0, 500.0]);
    }
}
