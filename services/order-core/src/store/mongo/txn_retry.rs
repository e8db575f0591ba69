//! What a failed MongoDB transaction may try again: the decision, apart from the I/O.
//!
//! The transactions specification gives the two error labels different meanings:
//! - `UnknownTransactionCommitResult` on a commit: the commit may or may not have landed.
//!   Only the commit may be sent again (the driver sends a retried commit with majority write
//!   concern). Running the body again could apply it twice: a batch would answer
//!   `already_ordered` to buyers it had just ordered, a reset would move the generation by 2.
//! - `TransientTransactionError`, on any operation of the transaction or on its commit: the
//!   server aborted the transaction, so nothing of it is committed and the whole transaction
//!   may run again, after a short jittered pause so that conflicting writers fall apart.
//!
//! Anything else is final. Both loops are bounded: a store that keeps failing is an error
//! for the caller (a 503, or a batch left unacknowledged for redelivery), never a hang.
//! (The driver's `start_transaction().and_run()` follows the same rules, but only bounds them
//! by 120 s of retries, and cannot restart on the caller's own conflicts, see
//! [`Failure::Body`].)

use std::time::Duration;

use mongodb::error::{
    ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};

/// Runs of a transaction's body, the first one included.
pub(super) const TRANSACTION_RUNS: u32 = 10;
/// Commits sent for one run of the body, the first one included.
pub(super) const COMMIT_SENDS: u32 = 5;

/// The server's code for `MaxTimeMSExpired`: a commit that ran out of its own time limit is
/// not retried even when labelled unknown (the specification's one exception).
const MAX_TIME_MS_EXPIRED: i32 = 50;

/// How a run of a transaction failed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Failure<'a> {
    /// An operation inside the transaction failed; the transaction is aborted. `conflict`: the
    /// caller knows that a fresh run resolves this error (e.g. a unique key that met an order
    /// a concurrent buyer committed after this run read), whatever its labels.
    Body {
        error: &'a mongodb::error::Error,
        conflict: bool,
    },
    /// `commitTransaction` failed.
    Commit(&'a mongodb::error::Error),
}

/// What to do after a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Send `commitTransaction` again, and only that.
    Commit,
    /// Nothing was committed: run the whole transaction again.
    Transaction,
    /// Return the error.
    GiveUp,
}

/// The decision after `failure`, when the body has run `runs` times and the current run's
/// commit has been sent `commits` times (both counting the failed attempt).
pub(super) fn decide(failure: Failure<'_>, runs: u32, commits: u32) -> Retry {
    let restart = if runs < TRANSACTION_RUNS {
        Retry::Transaction
    } else {
        Retry::GiveUp
    };
    match failure {
        Failure::Body { error, conflict } => {
            if conflict || error.contains_label(TRANSIENT_TRANSACTION_ERROR) {
                restart
            } else {
                Retry::GiveUp
            }
        }
        Failure::Commit(error) => {
            if error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                && !is_max_time_expired(error)
            {
                if commits < COMMIT_SENDS {
                    Retry::Commit
                } else {
                    Retry::GiveUp
                }
            } else if error.contains_label(TRANSIENT_TRANSACTION_ERROR) {
                restart
            } else {
                Retry::GiveUp
            }
        }
    }
}

/// The pause before try number `attempt + 1` (`attempt` >= 1 tries have failed), given a
/// `jitter` in [0, 1): full jitter over 5 ms x 1.5^attempt, capped at 500 ms (the schedule of
/// the driver's own convenient transactions).
pub(super) fn backoff(attempt: u32, jitter: f64) -> Duration {
    const INITIAL_MS: f64 = 5.0;
    const MAX_MS: f64 = 500.0;
    let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
    let ceiling = (INITIAL_MS * 1.5_f64.powi(exponent)).min(MAX_MS);
    Duration::from_secs_f64(jitter.clamp(0.0, 1.0) * ceiling / 1000.0)
}

/// A number in [0, 1) for [`backoff`]. std's `RandomState` is seeded at random for each
/// thread and differs for each instance: enough to spread the retries of competing writers,
/// without a dependency for it.
pub(super) fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::hash::RandomState::new().hash_one(0u8) >> 11;
    // 53 random bits over 2^53: exactly representable, below 1.
    bits as f64 / (1u64 << 53) as f64
}

fn is_max_time_expired(error: &mongodb::error::Error) -> bool {
    match &*error.kind {
        ErrorKind::Command(e) => e.code == MAX_TIME_MS_EXPIRED,
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => e.code == MAX_TIME_MS_EXPIRED,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{self, doc};
    use mongodb::error::{Error, ErrorKind, WriteConcernError, WriteFailure};

    use super::*;

    /// An error as the server sends it after a commit, carrying `labels`: the driver takes a
    /// write concern error's `errorLabels` as the error's own labels.
    fn server_error(code: i32, labels: &[&str]) -> Error {
        let failure: WriteConcernError = bson::from_document(doc! {
            "code": code,
            "codeName": "TestFailure",
            "errmsg": "injected by a test",
            "errorLabels": labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        })
        .expect("a write concern error document");
        Error::from(ErrorKind::Write(WriteFailure::WriteConcernError(failure)))
    }

    fn unknown_commit() -> Error {
        server_error(64, &[UNKNOWN_TRANSACTION_COMMIT_RESULT])
    }

    fn transient() -> Error {
        server_error(112, &[TRANSIENT_TRANSACTION_ERROR])
    }

    fn unlabelled() -> Error {
        server_error(2, &[])
    }

    fn body(error: &Error, conflict: bool) -> Failure<'_> {
        Failure::Body { error, conflict }
    }

    #[test]
    fn the_test_errors_carry_exactly_their_labels() {
        assert!(unknown_commit().contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT));
        assert!(!unknown_commit().contains_label(TRANSIENT_TRANSACTION_ERROR));
        assert!(transient().contains_label(TRANSIENT_TRANSACTION_ERROR));
        assert!(unlabelled().labels().is_empty());
    }

    #[test]
    fn an_unknown_commit_result_retries_the_commit_and_never_the_body() {
        assert_eq!(
            decide(Failure::Commit(&unknown_commit()), 1, 1),
            Retry::Commit
        );
        assert_eq!(
            decide(Failure::Commit(&unknown_commit()), 9, 4),
            Retry::Commit
        );
    }

    #[test]
    fn an_unknown_commit_result_gives_up_after_the_last_commit_even_with_runs_left() {
        assert_eq!(
            decide(Failure::Commit(&unknown_commit()), 1, COMMIT_SENDS),
            Retry::GiveUp
        );
    }

    #[test]
    fn an_unknown_commit_that_ran_out_of_its_time_limit_is_not_retried() {
        let expired = server_error(MAX_TIME_MS_EXPIRED, &[UNKNOWN_TRANSACTION_COMMIT_RESULT]);
        assert_eq!(decide(Failure::Commit(&expired), 1, 1), Retry::GiveUp);
    }

    #[test]
    fn a_transient_commit_error_runs_the_whole_transaction_again() {
        assert_eq!(
            decide(Failure::Commit(&transient()), 1, 1),
            Retry::Transaction
        );
        assert_eq!(
            decide(Failure::Commit(&transient()), 1, 3),
            Retry::Transaction
        );
    }

    #[test]
    fn a_commit_error_carrying_both_labels_retries_the_commit_only() {
        // Uncertain wins: the commit may have landed, so the body must not run again.
        let both = server_error(
            91,
            &[
                UNKNOWN_TRANSACTION_COMMIT_RESULT,
                TRANSIENT_TRANSACTION_ERROR,
            ],
        );
        assert_eq!(decide(Failure::Commit(&both), 1, 1), Retry::Commit);
    }

    #[test]
    fn a_transient_error_in_the_body_runs_the_whole_transaction_again() {
        let error = transient();
        assert_eq!(decide(body(&error, false), 1, 0), Retry::Transaction);
    }

    #[test]
    fn an_unknown_commit_label_on_a_body_error_is_not_a_reason_to_retry() {
        // Only a commit can have an unknown result; the body's operations never commit.
        let error = unknown_commit();
        assert_eq!(decide(body(&error, false), 1, 0), Retry::GiveUp);
    }

    #[test]
    fn a_conflict_the_caller_recognises_runs_the_transaction_again() {
        let error = unlabelled();
        assert_eq!(decide(body(&error, true), 1, 0), Retry::Transaction);
    }

    #[test]
    fn an_unlabelled_error_is_final_in_the_body_and_at_the_commit() {
        let error = unlabelled();
        let in_body = body(&error, false);
        assert_eq!(decide(in_body, 1, 0), Retry::GiveUp);
        assert_eq!(decide(Failure::Commit(&error), 1, 1), Retry::GiveUp);
    }

    #[test]
    fn the_whole_transaction_runs_at_most_transaction_runs_times() {
        let error = transient();
        let in_body = body(&error, true);
        assert_eq!(decide(in_body, TRANSACTION_RUNS - 1, 0), Retry::Transaction);
        assert_eq!(decide(in_body, TRANSACTION_RUNS, 0), Retry::GiveUp);
        assert_eq!(
            decide(Failure::Commit(&error), TRANSACTION_RUNS, 1),
            Retry::GiveUp
        );
    }

    #[test]
    fn the_backoff_grows_is_capped_and_scales_with_the_jitter() {
        assert_eq!(backoff(1, 0.0), Duration::ZERO);
        assert_eq!(backoff(1, 1.0), Duration::from_secs_f64(0.0075));
        assert!(backoff(2, 1.0) > backoff(1, 1.0));
        assert_eq!(backoff(30, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(u32::MAX, 0.5), Duration::from_millis(250));
        // Out-of-range jitter is clamped, never a negative or huge pause.
        assert_eq!(backoff(30, 7.0), Duration::from_millis(500));
        assert_eq!(backoff(30, -1.0), Duration::ZERO);
    }

    #[test]
    fn the_jitter_stays_in_the_unit_interval_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(draws.windows(2).any(|pair| pair[0] != pair[1]));
    }
}
