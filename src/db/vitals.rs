//! What liveness needs to know about the database without touching it: when it last answered (a probe
//! asks every few seconds), and how long the oldest batch in a writer's hands has been running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::DbPool;

/// See the module documentation. Shared by the probe, the batch writers and `/health`.
pub struct Vitals {
    started: Instant,
    /// Milliseconds after `started` of the database's last answer.
    last_answer_ms: AtomicU64,
    batches: Mutex<HashMap<u64, Instant>>,
    next_batch: AtomicU64,
}

impl Default for Vitals {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_answer_ms: AtomicU64::new(0),
            batches: Mutex::new(HashMap::new()),
            next_batch: AtomicU64::new(0),
        }
    }
}

impl Vitals {
    /// The database just answered.
    pub fn answered(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_answer_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// How long the database has not answered the probe.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_answer_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Marks a batch as running until the returned guard is dropped.
    pub fn batch_running(self: &Arc<Self>) -> RunningBatch {
        let id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Instant::now());
        RunningBatch {
            vitals: Arc::clone(self),
            id,
        }
    }

    /// How long the oldest running batch has been running.
    pub fn oldest_batch(&self) -> Option<Duration> {
        let batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        batches.values().map(Instant::elapsed).max()
    }
}

/// A batch in a writer's hands; see [`Vitals::batch_running`].
pub struct RunningBatch {
    vitals: Arc<Vitals>,
    id: u64,
}

impl Drop for RunningBatch {
    fn drop(&mut self) {
        self.vitals
            .batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Asks the database every `every` whether it answers, and notes when it does.
pub fn spawn_probe(pool: DbPool, vitals: Arc<Vitals>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if super::ping(&pool, every.min(Duration::from_secs(2))).await {
                vitals.answered();
            }
            tokio::time::sleep(every).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_while_it_runs_and_silence_grows_until_an_answer() {
        let vitals = Arc::new(Vitals::default());
        assert!(vitals.oldest_batch().is_none());
        let batch = vitals.batch_running();
        std::thread::sleep(Duration::from_millis(20));
        assert!(vitals.oldest_batch() >= Some(Duration::from_millis(20)));
        drop(batch);
        assert!(vitals.oldest_batch().is_none());

        assert!(vitals.silent_for() >= Duration::from_millis(20));
        vitals.answered();
        assert!(vitals.silent_for() < Duration::from_millis(20));
    }
}
