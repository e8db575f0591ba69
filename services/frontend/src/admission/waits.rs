//! The waits of one window's answers, as a log-linear histogram of atomic counters: recording
//! costs one `fetch_add`, and the window's median comes out of a hundred-odd counters when it
//! closes. The median, not the mean: a few buys held through a partition (answered after
//! seconds) would otherwise make a route that answers everyone else in 50 ms look stalled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per doubling: a wait is known within 1/8 (12.5%) of itself.
const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
/// Doublings above 8 µs: up to 2^31 µs (about 36 minutes); longer waits share the last bucket.
const DOUBLINGS: usize = 28;
const BUCKETS: usize = (DOUBLINGS + 1) * SUBS;

pub struct Waits {
    buckets: [AtomicU64; BUCKETS],
}

/// One window's answers: how many, and their median wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    pub answers: u64,
    pub median: Duration,
}

impl Waits {
    pub fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn record(&self, wait: Duration) {
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The answers recorded since the last call, and empties the histogram. An answer
    /// recorded while this runs counts in this window or the next, never in both.
    pub fn take(&self) -> Taken {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.swap(0, Ordering::Relaxed))
            .collect();
        let answers: u64 = counts.iter().sum();
        let half = answers.div_ceil(2);
        let mut seen = 0;
        let median = counts
            .iter()
            .position(|&count| {
                seen += count;
                seen >= half && count > 0
            })
            .map_or(Duration::ZERO, |index| Duration::from_micros(middle(index)));
        Taken { answers, median }
    }
}

/// Buckets 0..8 hold 0..8 µs exactly; above, each doubling [2^e, 2^(e+1)) is cut in 8.
fn bucket(micros: u64) -> usize {
    if micros < SUBS as u64 {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    let sub = (micros >> (exponent - SUB_BITS)) as usize & (SUBS - 1);
    let index = (exponent - SUB_BITS + 1) as usize * SUBS + sub;
    index.min(BUCKETS - 1)
}

/// The middle of a bucket, in microseconds.
fn middle(index: usize) -> u64 {
    if index < SUBS {
        return index as u64;
    }
    let exponent = (index / SUBS) as u32 + SUB_BITS - 1;
    let sub = (index % SUBS) as u64;
    let low = (SUBS as u64 + sub) << (exponent - SUB_BITS);
    low + (1 << (exponent - SUB_BITS)) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_its_waits_within_an_eighth() {
        for micros in [
            0, 1, 7, 8, 9, 15, 16, 100, 999, 1_000, 65_432, 100_000, 3_000_000,
        ] {
            let index = bucket(micros);
            let middle = middle(index) as f64;
            let error = (middle - micros as f64).abs() / (micros as f64).max(1.0);
            assert!(
                error <= 0.0625,
                "{micros} µs in bucket {index} (middle {middle})"
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_median_ignores_a_few_stragglers() {
        let waits = Waits::new();
        for _ in 0..50 {
            waits.record(Duration::from_millis(80));
        }
        for _ in 0..40 {
            waits.record(Duration::from_secs(5));
        }

        let taken = waits.take();

        assert_eq!(taken.answers, 90);
        let millis = taken.median.as_secs_f64() * 1000.0;
        assert!((75.0..=85.0).contains(&millis), "median {millis} ms");
    }

    #[test]
    fn taking_empties_the_window() {
        let waits = Waits::new();
        waits.record(Duration::from_millis(3));
        assert_eq!(waits.take().answers, 1);

        assert_eq!(
            waits.take(),
            Taken {
                answers: 0,
                median: Duration::ZERO
            }
        );
    }
}
