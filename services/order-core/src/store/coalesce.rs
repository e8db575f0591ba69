//! Concurrent reads of one process coalesced into one store call (DataLoader-style), so that
//! a crowd of buyers asking the same question (is the sale over, do I hold an order?) costs
//! the database one statement per batch instead of one per buyer.
//!
//! How: a read joins the waiting list. If fewer than `max_batches` batches are in flight, it
//! starts one at once with everything waiting (itself included), so a read with no
//! concurrency is sent at once, alone, and waits for nothing. Otherwise it waits for a batch
//! to finish: that batch's task then sends everything that waited meanwhile as the next
//! batch. No timer, no batch size to tune: batches are as large as the reads that arrive
//! during one round trip.
//!
//! Invariants:
//! - freshness: every read is answered from a call sent after it joined, so its answer is as
//!   fresh as a read of its own that started when the batch was sent (never an older
//!   answer: nothing is cached, and a reset committed before the batch was sent is seen);
//! - every read of a batch gets an answer: its own value, or the batch's error (shared by
//!   all of them, [`StoreError::Shared`]);
//! - at most `max_batches` calls in flight per coalescer, and none outlives `limit`: a batch
//!   still running then fails with [`StoreError::Timeout`] for all its reads (each caller is
//!   bounded by its own call timeout anyway);
//! - a caller that gives up (its future dropped) leaves the others' batch running.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::StoreError;

/// What a batch's call returns: one value per key, in the keys' order.
type BatchFuture<V> = Pin<Box<dyn Future<Output = Result<Vec<V>, StoreError>> + Send>>;
type Load<K, V> = dyn Fn(Vec<K>) -> BatchFuture<V> + Send + Sync;
type Answer<V> = oneshot::Sender<Result<V, Arc<StoreError>>>;

/// Coalesces concurrent `load(key)` calls into calls of one batch function on many keys.
pub(crate) struct Coalescer<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K, V> {
    load: Box<Load<K, V>>,
    max_batches: usize,
    limit: Duration,
    state: Mutex<State<K, V>>,
}

struct State<K, V> {
    /// Reads that joined since the last batch was sent.
    waiting: Vec<(K, Answer<V>)>,
    /// Batches being sent or answered right now.
    in_flight: usize,
}

impl<K, V> Coalescer<K, V>
where
    K: Send + 'static,
    V: Send + 'static,
{
    /// `load` answers a batch of keys, one value per key in the keys' order. At most
    /// `max_batches` (at least 1) of its calls run at once; each is given at most `limit`.
    pub(crate) fn new<F, Fut>(max_batches: usize, limit: Duration, load: F) -> Self
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<V>, StoreError>> + Send + 'static,
    {
        Self {
            shared: Arc::new(Shared {
                load: Box::new(move |keys| Box::pin(load(keys))),
                max_batches: max_batches.max(1),
                limit,
                state: Mutex::new(State {
                    waiting: Vec::new(),
                    in_flight: 0,
                }),
            }),
        }
    }

    /// The value for `key`, from the next batch sent (see the module doc).
    pub(crate) async fn load(&self, key: K) -> Result<V, StoreError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut state = self.shared.state();
            state.waiting.push((key, answer));
            if state.in_flight < self.shared.max_batches {
                state.in_flight += 1;
                Some(mem::take(&mut state.waiting))
            } else {
                None
            }
        };
        if let Some(batch) = start {
            // A task of its own, so that this caller giving up does not stop the batch the
            // others wait on.
            tokio::spawn(Arc::clone(&self.shared).send_batches(batch));
        }
        match answered.await {
            Ok(result) => result.map_err(StoreError::Shared),
            Err(_) => Err(StoreError::BatchLost),
        }
    }
}

impl<K, V> Shared<K, V> {
    fn state(&self) -> MutexGuard<'_, State<K, V>> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `batch`, answers it, then sends what waited meanwhile, until nothing waits.
    async fn send_batches(self: Arc<Self>, mut batch: Vec<(K, Answer<V>)>) {
        let mut slot = Slot {
            shared: &self,
            held: true,
        };
        loop {
            let (keys, answers): (Vec<K>, Vec<Answer<V>>) = batch.into_iter().unzip();
            let wanted = keys.len();
            let result = match tokio::time::timeout(self.limit, (self.load)(keys)).await {
                Ok(Ok(values)) if values.len() == wanted => Ok(values),
                Ok(Ok(values)) => Err(StoreError::Corrupt(format!(
                    "a batched read answered {} of {wanted} keys",
                    values.len()
                ))),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(StoreError::Timeout(self.limit)),
            };
            match result {
                Ok(values) => {
                    for (answer, value) in answers.into_iter().zip(values) {
                        // A caller that gave up no longer listens: nothing to do.
                        let _ = answer.send(Ok(value));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for answer in answers {
                        let _ = answer.send(Err(Arc::clone(&error)));
                    }
                }
            }
            let mut state = self.state();
            if state.waiting.is_empty() {
                // Under the same lock as the check: a read that joins after this sees the
                // slot free and starts a batch itself.
                state.in_flight -= 1;
                slot.held = false;
                return;
            }
            batch = mem::take(&mut state.waiting);
        }
    }
}

/// A batch slot, given back when its task ends without doing so itself (the load panicked,
/// or the runtime dropped the task): the reads waiting then, if no other batch is left to
/// send them, are answered with an error instead of waiting for one that never comes.
struct Slot<'a, K, V> {
    shared: &'a Shared<K, V>,
    held: bool,
}

impl<K, V> Drop for Slot<'_, K, V> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let stranded = {
            let mut state = self.shared.state();
            state.in_flight -= 1;
            match state.in_flight {
                0 => mem::take(&mut state.waiting),
                _ => Vec::new(),
            }
        };
        // Dropped outside the lock: each waiter's channel closes and it gets BatchLost.
        drop(stranded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    /// A batch function that records each batch's keys, answers `key * 10`, and sends a batch
    /// only when the test releases it (one permit per batch).
    struct Recorder {
        batches: Mutex<Vec<Vec<u64>>>,
        release: Semaphore,
    }

    fn recording(max_batches: usize) -> (Coalescer<u64, u64>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            batches: Mutex::new(Vec::new()),
            release: Semaphore::new(0),
        });
        let seen = Arc::clone(&recorder);
        let coalescer = Coalescer::new(
            max_batches,
            Duration::from_secs(5),
            move |keys: Vec<u64>| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.batches.lock().unwrap().push(keys.clone());
                    seen.release.acquire().await.unwrap().forget();
                    if keys.contains(&0) {
                        return Err(StoreError::Corrupt("key 0".into()));
                    }
                    Ok(keys.iter().map(|k| k * 10).collect())
                }
            },
        );
        (coalescer, recorder)
    }

    /// `coalescer.load(key)` in a task of its own.
    fn spawn_load(
        coalescer: &Coalescer<u64, u64>,
        key: u64,
    ) -> JoinHandle<Result<u64, StoreError>> {
        let coalescer = coalescer.clone();
        tokio::spawn(async move { coalescer.load(key).await })
    }

    /// Lets every spawned task run until it waits (the tests' runtime has one thread).
    async fn let_tasks_run() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    impl Recorder {
        fn batches(&self) -> Vec<Vec<u64>> {
            self.batches.lock().unwrap().clone()
        }

        /// Waits until `n` batches have been sent.
        async fn sent(&self, n: usize) {
            while self.batches.lock().unwrap().len() < n {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test]
    async fn a_read_with_no_concurrency_is_sent_at_once_alone() {
        let (coalescer, recorder) = recording(1);
        recorder.release.add_permits(2);

        assert_eq!(coalescer.load(4).await.unwrap(), 40);
        assert_eq!(coalescer.load(5).await.unwrap(), 50);

        assert_eq!(recorder.batches(), vec![vec![4], vec![5]]);
    }

    #[tokio::test]
    async fn reads_arriving_during_a_batch_go_together_in_the_next_one() {
        let (coalescer, recorder) = recording(1);
        let first = spawn_load(&coalescer, 1);
        recorder.sent(1).await;
        let later: Vec<_> = (2..=6).map(|k| spawn_load(&coalescer, k)).collect();
        // Let every later read join the waiting list before the first batch is answered.
        let_tasks_run().await;
        recorder.release.add_permits(2);

        assert_eq!(first.await.unwrap().unwrap(), 10);
        for (k, read) in (2..=6).zip(later) {
            assert_eq!(read.await.unwrap().unwrap(), k * 10);
        }
        assert_eq!(recorder.batches(), vec![vec![1], vec![2, 3, 4, 5, 6]]);
    }

    #[tokio::test]
    async fn up_to_max_batches_are_in_flight_at_once() {
        let (coalescer, recorder) = recording(2);
        let reads: Vec<_> = (1..=3).map(|k| spawn_load(&coalescer, k)).collect();
        recorder.sent(2).await;
        let_tasks_run().await;
        assert_eq!(
            recorder.batches(),
            vec![vec![1], vec![2]],
            "the third read waits"
        );

        recorder.release.add_permits(3);
        for (k, read) in (1..=3).zip(reads) {
            assert_eq!(read.await.unwrap().unwrap(), k * 10);
        }
        assert_eq!(recorder.batches().len(), 3);
    }

    #[tokio::test]
    async fn a_failed_batch_gives_its_error_to_every_read_in_it_and_the_next_batch_still_runs() {
        let (coalescer, recorder) = recording(1);
        let first = spawn_load(&coalescer, 9);
        recorder.sent(1).await;
        let failing: Vec<_> = [0, 7, 8]
            .into_iter()
            .map(|k| spawn_load(&coalescer, k))
            .collect();
        let_tasks_run().await;
        recorder.release.add_permits(2);

        assert_eq!(first.await.unwrap().unwrap(), 90);
        for read in failing {
            let error = read.await.unwrap().unwrap_err();
            assert!(
                matches!(&error, StoreError::Shared(e) if matches!(**e, StoreError::Corrupt(_))),
                "{error:?}"
            );
            assert_eq!(error.reason(), "store unavailable");
        }
        recorder.release.add_permits(1);
        assert_eq!(coalescer.load(3).await.unwrap(), 30);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_batch_to_the_others() {
        let (coalescer, recorder) = recording(1);
        let first = spawn_load(&coalescer, 1);
        recorder.sent(1).await;
        let quitter = spawn_load(&coalescer, 2);
        let stayer = spawn_load(&coalescer, 3);
        let_tasks_run().await;
        quitter.abort();
        recorder.release.add_permits(2);

        assert_eq!(first.await.unwrap().unwrap(), 10);
        assert_eq!(stayer.await.unwrap().unwrap(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_outlives_its_limit_fails_every_read_in_it_with_a_timeout() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let coalescer = Coalescer::new(1, Duration::from_millis(100), move |keys: Vec<u64>| {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok(keys)
            }
        });

        let error = coalescer.load(1).await.unwrap_err();

        assert!(
            matches!(&error, StoreError::Shared(e) if matches!(**e, StoreError::Timeout(_))),
            "{error:?}"
        );
        assert_eq!(
            coalescer.load(2).await.unwrap(),
            2,
            "the slot is free again"
        );
    }

    #[tokio::test]
    async fn a_batch_answering_the_wrong_number_of_values_is_an_error_for_every_read() {
        let coalescer = Coalescer::new(1, Duration::from_secs(5), |_keys: Vec<u64>| async {
            Ok(Vec::<u64>::new())
        });

        let error = coalescer.load(1).await.unwrap_err();

        assert!(
            matches!(&error, StoreError::Shared(e) if matches!(**e, StoreError::Corrupt(_))),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn reads_stranded_by_a_panicking_batch_get_an_error_instead_of_waiting() {
        let release = Arc::new(Semaphore::new(0));
        let gate = Arc::clone(&release);
        let coalescer = Coalescer::new(1, Duration::from_secs(5), move |keys: Vec<u64>| {
            let gate = Arc::clone(&gate);
            async move {
                gate.acquire().await.unwrap().forget();
                assert!(!keys.contains(&1), "a load that panics");
                Ok(keys)
            }
        });
        let first = spawn_load(&coalescer, 1);
        tokio::task::yield_now().await;
        let stranded = spawn_load(&coalescer, 2);
        let_tasks_run().await;
        release.add_permits(2);

        assert!(matches!(first.await.unwrap(), Err(StoreError::BatchLost)));
        assert!(matches!(
            stranded.await.unwrap(),
            Err(StoreError::BatchLost)
        ));
        assert_eq!(
            coalescer.load(3).await.unwrap(),
            3,
            "the slot is free again"
        );
    }
}
