//! Pass/fail checks on a report, as k6's thresholds: `--check 'p99<250ms'`.
//!
//! An expression is `METRIC OP VALUE[UNIT]`, parsed when the options are (so a malformed
//! one is a usage error before anything is sent), and evaluated on the finished report.
//!
//! - durations (`min`, `mean`, `p50`, `p90`, `p99`, `p999`, `max`): `us`, `ms` or `s`; a
//!   bare number is milliseconds;
//! - counts (`requests`, `errors`, `ordered`, `sold_out`, `already_ordered`, `other`,
//!   `http_4xx`, `http_5xx`, `timeouts`, `connect_errors`, `io_errors`, `oversold`,
//!   `lost`): a number, or a percentage of the requests sent (`errors<=0.1%`);
//! - `rps`: answered requests per second;
//! - fairness (`fcfs_precision`, `inversions`, `winners_median_rank`): a plain number;
//! - `first_send_spread` (how together the first sends went out): a duration.
//!
//! Operators: `<`, `<=`, `>`, `>=`, `==`, `!=`. The measured value is reported in the unit
//! of the expression. A check on a value the run could not measure (`oversold` when the
//! store was not read) fails: an unknown is not a pass.

use std::str::FromStr;

use crate::report::{CheckResult, Report};

/// Exit code of the binary when every step ran but a check failed.
pub const EXIT_CHECK_FAILED: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Latency(LatencyClass, LatencyField),
    Count(CountField),
    Rps,
    Fairness(FairnessField),
    FirstSendSpread,
}

impl Metric {
    fn is_duration(self) -> bool {
        matches!(self, Metric::Latency(..) | Metric::FirstSendSpread)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FairnessField {
    FcfsPrecision,
    Inversions,
    WinnersMedianRank,
}

/// Whose latency: every answer, the accepted ones, the refused (4xx, 5xx) ones, or how late
/// the open loop sent (the generator's own lag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatencyClass {
    All,
    Accepted,
    Refused,
    SendLag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatencyField {
    Min,
    Mean,
    P50,
    P90,
    P99,
    P999,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CountField {
    Requests,
    Errors,
    Ordered,
    SoldOut,
    AlreadyOrdered,
    Other,
    Http4xx,
    Http5xx,
    Timeouts,
    ConnectErrors,
    IoErrors,
    Oversold,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

/// The unit a threshold (and so the measured value) is expressed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Micros,
    Millis,
    Seconds,
    Percent,
    Plain,
}

impl Unit {
    fn symbol(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::Millis => "ms",
            Unit::Seconds => "s",
            Unit::Percent => "%",
            Unit::Plain => "",
        }
    }
}

/// A parsed check expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    expr: String,
    metric: Metric,
    op: Op,
    threshold: f64,
    unit: Unit,
}

fn latency_field(name: &str) -> Option<LatencyField> {
    use LatencyField as L;
    Some(match name {
        "min" => L::Min,
        "mean" | "avg" => L::Mean,
        "p50" | "median" => L::P50,
        "p90" => L::P90,
        "p99" => L::P99,
        "p999" | "p99.9" => L::P999,
        "max" | "longest" => L::Max,
        _ => return None,
    })
}

fn metric(name: &str) -> Option<Metric> {
    use CountField as C;
    let prefixes = [
        ("accepted_", LatencyClass::Accepted),
        ("refused_", LatencyClass::Refused),
        ("send_lag_", LatencyClass::SendLag),
    ];
    let (class, field) = prefixes
        .iter()
        .find_map(|(prefix, class)| Some((*class, name.strip_prefix(prefix)?)))
        .unwrap_or((LatencyClass::All, name));
    if let Some(field) = latency_field(field) {
        return Some(Metric::Latency(class, field));
    }
    if class != LatencyClass::All {
        return None;
    }
    Some(match name {
        "rps" | "throughput" => Metric::Rps,
        "fcfs_precision" => Metric::Fairness(FairnessField::FcfsPrecision),
        "inversions" => Metric::Fairness(FairnessField::Inversions),
        "winners_median_rank" | "winners_median_send_rank" => {
            Metric::Fairness(FairnessField::WinnersMedianRank)
        }
        "first_send_spread" => Metric::FirstSendSpread,
        "requests" => Metric::Count(C::Requests),
        "errors" => Metric::Count(C::Errors),
        "ordered" => Metric::Count(C::Ordered),
        "sold_out" => Metric::Count(C::SoldOut),
        "already_ordered" => Metric::Count(C::AlreadyOrdered),
        "other" => Metric::Count(C::Other),
        "http_4xx" | "4xx" => Metric::Count(C::Http4xx),
        "http_5xx" | "5xx" => Metric::Count(C::Http5xx),
        "timeouts" | "timeout" => Metric::Count(C::Timeouts),
        "connect_errors" | "connect_error" => Metric::Count(C::ConnectErrors),
        "io_errors" | "io_error" => Metric::Count(C::IoErrors),
        "oversold" => Metric::Count(C::Oversold),
        "lost" | "lost_orders" => Metric::Count(C::Lost),
        _ => return None,
    })
}

const METRICS: &str = "min, mean, p50, p90, p99, p999, max (each also as accepted_* for \
                       the answers that were not an error status, refused_* for 4xx/5xx, \
                       send_lag_* for how late the open loop sent), \
                       rps, requests, errors, ordered, sold_out, already_ordered, other, \
                       http_4xx, http_5xx, timeouts, connect_errors, io_errors, oversold, lost, \
                       fcfs_precision, inversions, winners_median_rank, first_send_spread";

impl FromStr for Check {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expr: String = s.split_whitespace().collect();
        let bad = |why: String| {
            Err(format!(
                "bad check `{s}`: {why} (write METRIC OP VALUE, e.g. 'p99<250ms', \
                 'errors<=0.1%', 'oversold==0', 'rps>=1000')"
            ))
        };
        let Some(at) = expr.find(['<', '>', '=', '!']) else {
            return bad("no operator (<, <=, >, >=, ==, !=)".into());
        };
        let (name, rest) = expr.split_at(at);
        let (op, value) = match rest.get(..2) {
            Some("<=") => (Op::Le, &rest[2..]),
            Some(">=") => (Op::Ge, &rest[2..]),
            Some("==") => (Op::Eq, &rest[2..]),
            Some("!=") => (Op::Ne, &rest[2..]),
            _ if rest.starts_with('<') => (Op::Lt, &rest[1..]),
            _ if rest.starts_with('>') => (Op::Gt, &rest[1..]),
            _ => return bad(format!("unknown operator in `{rest}`")),
        };
        let name = name.to_ascii_lowercase();
        let Some(metric) = metric(&name) else {
            return bad(format!("unknown metric `{name}`; known: {METRICS}"));
        };
        let split = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(value.len());
        let (number, unit) = value.split_at(split);
        let Ok(threshold) = number.parse::<f64>() else {
            return bad(format!("`{value}` is not a number"));
        };
        if !threshold.is_finite() {
            return bad(format!("`{value}` is not a finite number"));
        }
        let unit = match (metric, unit) {
            (m, "us" | "µs") if m.is_duration() => Unit::Micros,
            (m, "ms" | "") if m.is_duration() => Unit::Millis,
            (m, "s") if m.is_duration() => Unit::Seconds,
            (m, u) if m.is_duration() => return bad(format!("`{u}` is not us, ms or s")),
            (Metric::Count(_), "%") => Unit::Percent,
            (_, "") => Unit::Plain,
            (Metric::Count(_), u) => {
                return bad(format!("a count takes a number or a %, not `{u}`"));
            }
            (_, u) => return bad(format!("`{name}` takes a plain number, not `{u}`")),
        };
        Ok(Check {
            expr,
            metric,
            op,
            threshold,
            unit,
        })
    }
}

/// For clap: `--check EXPR`.
pub fn parse_check(s: &str) -> Result<Check, String> {
    s.parse()
}

impl Check {
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The measured value of the check's metric, in the check's unit.
    fn measure(&self, r: &Report) -> Option<f64> {
        use CountField as C;
        use LatencyField as L;
        let in_unit = |ms: f64| match self.unit {
            Unit::Micros => ms * 1000.0,
            Unit::Seconds => ms / 1000.0,
            _ => ms,
        };
        match self.metric {
            Metric::Rps => Some(r.throughput_rps),
            Metric::FirstSendSpread => r.first_send_spread_ms.map(in_unit),
            Metric::Fairness(field) => {
                let f = r.fairness.as_ref()?;
                match field {
                    FairnessField::FcfsPrecision => f.fcfs_precision,
                    FairnessField::Inversions => f.inversions,
                    FairnessField::WinnersMedianRank => f.winners_median_send_rank,
                }
            }
            Metric::Latency(class, field) => {
                // No answer of that class: no latency was measured.
                let l = match class {
                    LatencyClass::All => (r.responses > 0).then_some(&r.latency_ms),
                    LatencyClass::Accepted => r.latency_accepted_ms.as_ref(),
                    LatencyClass::Refused => r.latency_refused_ms.as_ref(),
                    LatencyClass::SendLag => r.send_lag_ms.as_ref(),
                }?;
                let ms = match field {
                    L::Min => l.min,
                    L::Mean => l.mean,
                    L::P50 => l.p50,
                    L::P90 => l.p90,
                    L::P99 => l.p99,
                    L::P999 => l.p999,
                    L::Max => l.max,
                };
                Some(in_unit(ms))
            }
            Metric::Count(field) => {
                let o = &r.outcomes;
                let count = match field {
                    C::Requests => Some(r.requests),
                    C::Errors => Some(r.errors),
                    C::Ordered => Some(o.ordered),
                    C::SoldOut => Some(o.sold_out),
                    C::AlreadyOrdered => Some(o.already_ordered),
                    C::Other => Some(o.other),
                    C::Http4xx => Some(o.http_4xx),
                    C::Http5xx => Some(o.http_5xx),
                    C::Timeouts => Some(o.timeout),
                    C::ConnectErrors => Some(o.connect_error),
                    C::IoErrors => Some(o.io_error),
                    C::Oversold => r.oversold,
                    C::Lost => r.lost_orders,
                }? as f64;
                match self.unit {
                    Unit::Percent if r.requests == 0 => None,
                    Unit::Percent => Some(100.0 * count / r.requests as f64),
                    _ => Some(count),
                }
            }
        }
    }

    pub fn evaluate(&self, report: &Report) -> CheckResult {
        let value = self.measure(report);
        CheckResult {
            expr: self.expr.clone(),
            value,
            unit: self.unit.symbol().to_string(),
            pass: value.is_some_and(|v| self.op.holds(v, self.threshold)),
        }
    }
}

/// Evaluates every check on a report.
pub fn evaluate(checks: &[Check], report: &Report) -> Vec<CheckResult> {
    checks.iter().map(|c| c.evaluate(report)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_parses_and_compares() {
        for (expr, value, expected) in [
            ("rps<10", 9.0, true),
            ("rps<=10", 10.0, true),
            ("rps>10", 10.0, false),
            ("rps>=10", 10.0, true),
            ("rps==10", 10.0, true),
            ("rps!=10", 10.0, false),
        ] {
            let check: Check = expr.parse().unwrap();
            assert_eq!(check.op.holds(value, check.threshold), expected, "{expr}");
        }
    }

    #[test]
    fn durations_take_units_and_default_to_milliseconds() {
        let c: Check = "p99 < 250ms".parse().unwrap();
        assert_eq!(
            (c.unit, c.threshold, c.expr()),
            (Unit::Millis, 250.0, "p99<250ms")
        );
        assert_eq!("p50<2s".parse::<Check>().unwrap().unit, Unit::Seconds);
        assert_eq!("max<=900us".parse::<Check>().unwrap().unit, Unit::Micros);
        assert_eq!("p999<40".parse::<Check>().unwrap().unit, Unit::Millis);
        assert_eq!("errors<=0.1%".parse::<Check>().unwrap().unit, Unit::Percent);
        assert_eq!(
            "first_send_spread<2s".parse::<Check>().unwrap().unit,
            Unit::Seconds
        );
    }

    #[test]
    fn fairness_checks_are_plain_numbers() {
        let c: Check = "fcfs_precision>=0.9".parse().unwrap();
        assert_eq!(
            (c.metric, c.unit, c.threshold),
            (
                Metric::Fairness(FairnessField::FcfsPrecision),
                Unit::Plain,
                0.9
            )
        );
        assert!("inversions<=0.1".parse::<Check>().is_ok());
        assert!("winners_median_rank<=60".parse::<Check>().is_ok());
    }

    #[test]
    fn malformed_expressions_say_what_is_wrong() {
        for (expr, says) in [
            ("p99", "no operator"),
            ("latency<3ms", "unknown metric"),
            ("p99<fast", "not a number"),
            ("p99<3%", "not us, ms or s"),
            ("errors<3ms", "a count takes"),
            ("rps>=1k", "plain number"),
            ("fcfs_precision>=90%", "plain number"),
            ("first_send_spread<3%", "not us, ms or s"),
            ("p99=<3", "unknown operator"),
        ] {
            let err = expr.parse::<Check>().unwrap_err();
            assert!(err.contains(says), "{expr}: {err}");
        }
    }
}
