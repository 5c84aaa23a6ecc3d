//! Group commit for metering: every finished or refused invocation hands its settlement to the meter
//! and waits until a transaction holding it has committed, so the answer still leaves only after its
//! usage row is durable. Settlements that arrive while a batch is being written wait for the next one,
//! which writes them all in one transaction (one commit, one flush, a handful of set-based statements),
//! instead of one transaction each. At low load a batch holds a single settlement and nothing waits.
//!
//! Two writers take turns, so one batch can be filled while the other is committing. Each batch locks
//! subscriptions and rollup rows in key order, so two batches never deadlock. If a batch fails, its
//! settlements are written one by one, so one bad settlement cannot fail the others.

use std::sync::Arc;

use diesel_async::AsyncConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::repo as idempotency;
use crate::billing::model::Reservation;
use crate::billing::service as billing;
use crate::db::DbPool;
use crate::error::{AppError, AppResult};
use crate::usage::model::UsageEvent;
use crate::usage::repo as usage;

/// The most settlements one transaction writes.
const MAX_BATCH: usize = 256;
/// Transactions that may be open at once.
const WRITERS: usize = 2;

/// What an idempotency key becomes once its call is metered.
#[derive(Debug, Clone)]
pub enum KeyOutcome {
    /// The call succeeded: keep its answer for replays.
    Complete(serde_json::Value),
    /// The call failed or was refused: free the key so a retry runs.
    Abandon,
}

/// One invocation's metering: its usage row, the reservation to settle and its idempotency key.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub event: UsageEvent,
    /// The caller's plan tier at the time (`NONE` without a subscription).
    pub tier: String,
    /// Settled with `event.tokens_used`; `None` for refused calls, which reserved nothing.
    pub reservation: Option<Reservation>,
    pub key: Option<(String, KeyOutcome)>,
}

struct Job {
    settlement: Settlement,
    done: oneshot::Sender<AppResult<()>>,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Meter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Meter {
    /// Starts the writers on the current Tokio runtime; they stop when the last `Meter` is dropped.
    pub fn start(pool: DbPool) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(writer(pool.clone(), Arc::clone(&receiver)));
        }
        Self { jobs }
    }

    /// Returns once the settlement is committed.
    pub async fn write(&self, settlement: Settlement) -> AppResult<()> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send(Job { settlement, done })
            .map_err(|_| AppError::internal(anyhow::anyhow!("the metering writers stopped")))?;
        committed
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("a metering writer stopped")))?
    }
}

async fn writer(pool: DbPool, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut jobs = receiver.lock().await;
            if jobs.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        metrics::histogram!("gateway_meter_batch_size").record(batch.len() as f64);
        let settlements: Vec<&Settlement> = batch.iter().map(|job| &job.settlement).collect();
        match write_batch(&pool, &settlements).await {
            Ok(()) => {
                for job in batch.drain(..) {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::warn!(error = %error.public_message(), size = batch.len(), "a metering batch failed; writing its settlements one by one");
                for job in batch.drain(..) {
                    let result = write_batch(&pool, &[&job.settlement]).await;
                    let _ = job.done.send(result);
                }
            }
        }
    }
}

/// Writes settlements in one transaction.
async fn write_batch(pool: &DbPool, settlements: &[&Settlement]) -> AppResult<()> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let reservations: Vec<(Reservation, i64)> = settlements
            .iter()
            .filter_map(|s| s.reservation.map(|r| (r, s.event.tokens_used)))
            .collect();
        billing::settle_batch_in(conn, &reservations).await?;
        let events: Vec<(&UsageEvent, &str)> = settlements
            .iter()
            .map(|s| (&s.event, s.tier.as_str()))
            .collect();
        usage::record_batch(conn, &events).await?;
        for settlement in settlements {
            let user = settlement.event.user_id;
            match &settlement.key {
                Some((key, KeyOutcome::Complete(answer))) => {
                    idempotency::complete(conn, user, key, settlement.event.id, answer).await?;
                }
                Some((key, KeyOutcome::Abandon)) => {
                    idempotency::abandon(conn, user, key).await?;
                }
                None => {}
            }
        }
        Ok(())
    })
    .await
}
