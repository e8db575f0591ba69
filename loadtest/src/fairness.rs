//! Fairness: did the first buyers win?
//!
//! Buyers are ranked by their first send (rank 1 sent first; ties of the microsecond clock
//! broken by user id). The winners are the buyers the store holds when it lists its buyers,
//! else those answered `ordered` (or `already_ordered`). With W winners and L losers:
//!
//! - `fcfs_precision`: the share of the W winners among the W buyers who sent first (1.0:
//!   first come, first served);
//! - `inversions`: the share of the W x L (winner, loser) pairs in which the loser sent
//!   first (a tie counts half): 0 is perfect order, about 0.5 a lottery, 1 last come first
//!   served;
//! - `winners_median_send_rank`: the median rank of the winners (about W/2 when first
//!   come, first served);
//! - `by_send_rank`: buckets of consecutive ranks with who won and how the others were
//!   answered, for the plot.
//!
//! What it can tell: the order of this generator's sends, on its own monotonic clock. What
//! it cannot: the order in which the server saw them (the network, the kernel and the front
//! tier's accept queue lie between), nor the order against another load machine's buyers.

use serde::{Deserialize, Serialize};

use crate::buyers::Buyer;
use crate::outcome::Outcome;

/// Buckets of the send-rank profile, at most.
const RANK_BUCKETS: usize = 40;

/// Fairness of one run. `None` fields: not defined (no winner, or no loser).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    pub buyers: u64,
    pub winners: u64,
    /// `store` (the store's list of buyers) or `answers` (buyers answered `ordered`).
    pub winners_from: String,
    pub fcfs_precision: Option<f64>,
    pub inversions: Option<f64>,
    pub winners_median_send_rank: Option<f64>,
    pub by_send_rank: Vec<RankBucket>,
}

/// Buyers of send ranks `first_rank..=last_rank`, by what they got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankBucket {
    pub first_rank: u64,
    pub last_rank: u64,
    pub won: u64,
    /// Buyers who did not win, by their last answer.
    pub sold_out: u64,
    pub error: u64,
    pub other: u64,
}

/// Measures the fairness of `buyers` (in send order). `held`: every buyer the store holds,
/// ascending, when it lists them. `None` without buyers.
pub fn measure(buyers: &[Buyer], held: Option<&[u64]>) -> Option<Fairness> {
    if buyers.is_empty() {
        return None;
    }
    let won: Vec<bool> = buyers
        .iter()
        .map(|b| match held {
            Some(held) => held.binary_search(&b.user).is_ok(),
            None => matches!(b.outcome, Outcome::Ordered | Outcome::AlreadyOrdered),
        })
        .collect();
    let n = buyers.len();
    let winners = won.iter().filter(|w| **w).count();
    let losers = n - winners;
    let fcfs_precision = (winners > 0)
        .then(|| won[..winners].iter().filter(|w| **w).count() as f64 / winners as f64);
    let inversions = (winners > 0 && losers > 0).then(|| {
        // Walk the buyers in groups of equal send instants: each winner meets every loser
        // who sent before it (one inversion each) and every loser of its own instant (half).
        let mut inverted = 0.0;
        let mut losers_before = 0u64;
        let mut i = 0;
        while i < n {
            let mut j = i;
            while j < n && buyers[j].first_send_us == buyers[i].first_send_us {
                j += 1;
            }
            let w = won[i..j].iter().filter(|w| **w).count() as u64;
            let l = (j - i) as u64 - w;
            inverted += (w * losers_before) as f64 + 0.5 * (w * l) as f64;
            losers_before += l;
            i = j;
        }
        inverted / (winners as f64 * losers as f64)
    });
    let ranks: Vec<f64> = (1..=n)
        .zip(&won)
        .filter(|(_, w)| **w)
        .map(|(rank, _)| rank as f64)
        .collect();
    let winners_median_send_rank = (!ranks.is_empty()).then(|| {
        let m = ranks.len();
        if m % 2 == 1 {
            ranks[m / 2]
        } else {
            (ranks[m / 2 - 1] + ranks[m / 2]) / 2.0
        }
    });
    Some(Fairness {
        buyers: n as u64,
        winners: winners as u64,
        winners_from: if held.is_some() { "store" } else { "answers" }.into(),
        fcfs_precision: fcfs_precision.map(round4),
        inversions: inversions.map(round4),
        winners_median_send_rank,
        by_send_rank: rank_buckets(buyers, &won),
    })
}

fn rank_buckets(buyers: &[Buyer], won: &[bool]) -> Vec<RankBucket> {
    let n = buyers.len();
    let count = n.min(RANK_BUCKETS);
    (0..count)
        .map(|k| {
            let (from, to) = (k * n / count, (k + 1) * n / count);
            let mut bucket = RankBucket {
                first_rank: from as u64 + 1,
                last_rank: to as u64,
                won: 0,
                sold_out: 0,
                error: 0,
                other: 0,
            };
            for (b, w) in buyers[from..to].iter().zip(&won[from..to]) {
                let slot = match b.outcome {
                    _ if *w => &mut bucket.won,
                    Outcome::SoldOut => &mut bucket.sold_out,
                    o if o.is_error() => &mut bucket.error,
                    _ => &mut bucket.other,
                };
                *slot += 1;
            }
            bucket
        })
        .collect()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buyers 1..=n sending in that order, one µs apart; `winners` got `ordered`.
    fn buyers(n: u64, winners: &[u64]) -> Vec<Buyer> {
        (1..=n)
            .map(|user| Buyer {
                user,
                first_send_us: user,
                sends: 1,
                outcome: if winners.contains(&user) {
                    Outcome::Ordered
                } else {
                    Outcome::SoldOut
                },
                status: Some(200),
                order_id: None,
            })
            .collect()
    }

    #[test]
    fn the_first_senders_winning_is_perfect_order() {
        let f = measure(&buyers(10, &[1, 2, 3]), None).unwrap();
        assert_eq!((f.buyers, f.winners), (10, 3));
        assert_eq!((f.fcfs_precision, f.inversions), (Some(1.0), Some(0.0)));
        assert_eq!(f.winners_median_send_rank, Some(2.0));
        assert_eq!(f.winners_from, "answers");
    }

    #[test]
    fn the_last_senders_winning_is_fully_inverted() {
        let f = measure(&buyers(10, &[8, 9, 10]), None).unwrap();
        assert_eq!((f.fcfs_precision, f.inversions), (Some(0.0), Some(1.0)));
        assert_eq!(f.winners_median_send_rank, Some(9.0));
    }

    #[test]
    fn partly_in_order_counts_each_pair() {
        // Winners at ranks 1 and 3 of 4: pairs (1,2) (1,4) (3,2) (3,4); only (3,2) is
        // inverted.
        let f = measure(&buyers(4, &[1, 3]), None).unwrap();
        assert_eq!((f.fcfs_precision, f.inversions), (Some(0.5), Some(0.25)));
        assert_eq!(f.winners_median_send_rank, Some(2.0));
    }

    #[test]
    fn ties_count_half_and_undefined_measures_are_none() {
        let mut b = buyers(2, &[2]);
        b[1].first_send_us = b[0].first_send_us;
        assert_eq!(measure(&b, None).unwrap().inversions, Some(0.5));
        let all = measure(&buyers(3, &[1, 2, 3]), None).unwrap();
        assert_eq!((all.fcfs_precision, all.inversions), (Some(1.0), None));
        let none = measure(&buyers(3, &[]), None).unwrap();
        assert_eq!((none.fcfs_precision, none.inversions), (None, None));
        assert!(measure(&[], None).is_none());
    }

    #[test]
    fn the_store_decides_who_won_when_it_lists_its_buyers() {
        // Buyer 2's answer timed out, but its order is in the store.
        let mut b = buyers(4, &[1]);
        b[1].outcome = Outcome::Timeout;
        let f = measure(&b, Some(&[1, 2])).unwrap();
        assert_eq!((f.winners, f.winners_from.as_str()), (2, "store"));
        assert_eq!(f.fcfs_precision, Some(1.0));
        let bucket = f.by_send_rank[1];
        assert_eq!((bucket.first_rank, bucket.won, bucket.error), (2, 1, 0));
    }

    #[test]
    fn the_rank_profile_covers_every_buyer_once() {
        let mut b = buyers(100, &[1, 50]);
        b[99].outcome = Outcome::Http5xx;
        let f = measure(&b, None).unwrap();
        assert_eq!(f.by_send_rank.len(), RANK_BUCKETS);
        let total: u64 = f
            .by_send_rank
            .iter()
            .map(|k| k.won + k.sold_out + k.error + k.other)
            .sum();
        assert_eq!(total, 100);
        assert_eq!(f.by_send_rank.last().unwrap().last_rank, 100);
        assert_eq!(f.by_send_rank.last().unwrap().error, 1);
    }
}
