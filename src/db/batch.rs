//! Group execution of one hot statement: callers hand a request to a [`Batcher`] and wait; its
//! writers take every request waiting and run them all in one statement (one round trip, one commit),
//! then answer each caller (or, for [`Batcher::send`], nobody). Requests that arrive while a batch
//! runs wait for the next one, so at low load a batch holds a single request and nothing waits, and
//! under load the statement's fixed cost (protocol, executor start-up, commit) is shared.
//!
//! Each writer owns a connection taken out of the pool that only ever runs its statement, so it plans
//! it once (`plan_cache_mode = force_generic_plan`: PostgreSQL otherwise re-plans a statement over
//! arrays for every batch, which took as long as running it). The connection is dropped after any
//! failure and taken again on next use. A failed batch is run again one request at a time, so one bad
//! request cannot fail the others.
//!
//! A batch that fails because the database went away (a restart, a crash, a failover) may still have
//! committed: the commit can land and its answer be lost with the connection. A statement that can
//! tell ([`BatchStatement::committed`]) has such batches tried again, with backoff, for
//! [`BatchStatement::RETRY_AFTER_LOSS`]: on a fresh connection it first asks whether the batch
//! committed and runs it again only if not, so a request is neither lost nor applied twice. Callers
//! keep waiting meanwhile; a batch still failing after that long answers the loss.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::DbPool;
use super::vitals::Vitals;
use crate::error::{AppError, AppResult};

/// Most requests in one batch.
pub const MAX_BATCH: usize = 256;

/// A statement that serves many requests at once.
pub trait BatchStatement: Send + Sync + 'static {
    type Request: Send + Sync + 'static;
    type Response: Send + 'static;

    /// Session settings for each writer's connection (one or more statements), run once when it is
    /// taken from the pool.
    const SETTINGS: &'static str = "SET plan_cache_mode = force_generic_plan";

    /// How long a batch lost with the database is tried again; zero (the default) answers the loss
    /// at once. Not zero only for statements whose [`Self::committed`] can tell, or that may run twice
    /// without harm.
    const RETRY_AFTER_LOSS: Duration = Duration::ZERO;

    /// How long a writer that received a request waits for more before running them; zero (the
    /// default) runs at once. Only for requests nobody waits on ([`Batcher::send`]), where a batch per
    /// request would cost a transaction each at low load.
    const GATHER: Duration = Duration::ZERO;

    /// For a batch whose answer was lost with its connection: its responses if it committed, `None`
    /// if it did not (so it is run again). Asked on a fresh connection.
    fn committed(
        &self,
        _conn: &mut AsyncPgConnection,
        _requests: &[&Self::Request],
    ) -> impl Future<Output = AppResult<Option<Vec<Self::Response>>>> + Send {
        async { Ok(None) }
    }

    /// Runs the requests together; exactly one response per request, in their order. `writer`
    /// (0 to `writers - 1`) tells which writer runs them: batches of different writers may be in
    /// flight at once, those of one writer never are.
    fn run(
        &self,
        conn: &mut AsyncPgConnection,
        writer: usize,
        requests: &[&Self::Request],
    ) -> impl Future<Output = AppResult<Vec<Self::Response>>> + Send;
}

struct Job<S: BatchStatement> {
    request: S::Request,
    done: oneshot::Sender<AppResult<S::Response>>,
}

/// See the module documentation. Cheap to clone.
pub struct Batcher<S: BatchStatement> {
    jobs: mpsc::UnboundedSender<Job<S>>,
}

impl<S: BatchStatement> Clone for Batcher<S> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<S: BatchStatement> Batcher<S> {
    /// Starts `writers` writers on the current Tokio runtime; they stop when the last clone is dropped.
    /// `name` labels the batch-size metric.
    /// `vitals` learns how long each batch runs (a stuck writer fails liveness).
    pub fn start(
        pool: DbPool,
        statement: S,
        writers: usize,
        name: &'static str,
        vitals: Arc<Vitals>,
    ) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let statement = Arc::new(statement);
        for index in 0..writers.max(1) {
            tokio::spawn(writer(
                WriterConnection {
                    pool: pool.clone(),
                    conn: None,
                    index,
                },
                Arc::clone(&statement),
                Arc::clone(&receiver),
                name,
                Arc::clone(&vitals),
            ));
        }
        Self { jobs }
    }

    /// Runs `request` in the next batch; returns its response once the batch has committed.
    pub async fn submit(&self, request: S::Request) -> AppResult<S::Response> {
        let (done, answered) = oneshot::channel();
        self.jobs
            .send(Job { request, done })
            .map_err(|_| AppError::internal(anyhow::anyhow!("the batch writers stopped")))?;
        answered
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("a batch writer stopped")))?
    }

    /// Runs `request` in a coming batch without waiting for it; its outcome is not reported.
    pub fn send(&self, request: S::Request) {
        let (done, _) = oneshot::channel();
        if self.jobs.send(Job { request, done }).is_err() {
            tracing::warn!("the batch writers stopped; a request was dropped");
        }
    }
}

struct WriterConnection {
    pool: DbPool,
    conn: Option<AsyncPgConnection>,
    index: usize,
}

impl WriterConnection {
    async fn get<S: BatchStatement>(&mut self) -> AppResult<&mut AsyncPgConnection> {
        if self.conn.is_none() {
            let mut conn = Object::take(self.pool.get().await?);
            conn.batch_execute(S::SETTINGS).await?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("no batch connection")))
    }

    async fn run<S: BatchStatement>(
        &mut self,
        statement: &S,
        requests: &[&S::Request],
    ) -> AppResult<Vec<S::Response>> {
        let index = self.index;
        let result = statement.run(self.get::<S>().await?, index, requests).await;
        match result {
            Ok(responses) if responses.len() == requests.len() => Ok(responses),
            Ok(responses) => {
                self.conn = None;
                Err(AppError::internal(anyhow::anyhow!(
                    "a batch of {} requests got {} responses",
                    requests.len(),
                    responses.len()
                )))
            }
            Err(error) => {
                self.conn = None;
                Err(error)
            }
        }
    }
}

/// First pause before a batch lost with the database is tried again; it doubles up to
/// `LOSS_BACKOFF_MAX`.
const LOSS_BACKOFF: Duration = Duration::from_millis(50);
const LOSS_BACKOFF_MAX: Duration = Duration::from_secs(2);

impl WriterConnection {
    /// [`Self::run`], trying again a batch lost with the database (see the module documentation).
    async fn run_surviving_loss<S: BatchStatement>(
        &mut self,
        statement: &S,
        requests: &[&S::Request],
    ) -> AppResult<Vec<S::Response>> {
        let mut result = self.run(statement, requests).await;
        let lost_at = Instant::now();
        let mut backoff = LOSS_BACKOFF;
        let mut attempts = 1u32;
        while matches!(result, Err(AppError::Unavailable(_)))
            && lost_at.elapsed() < S::RETRY_AFTER_LOSS
        {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(LOSS_BACKOFF_MAX);
            attempts += 1;
            result = self.run_unless_committed(statement, requests).await;
        }
        if attempts > 1 {
            match &result {
                Ok(_) => tracing::info!(
                    size = requests.len(),
                    attempts,
                    "a batch lost with the database was written"
                ),
                Err(error) => tracing::error!(
                    size = requests.len(),
                    attempts,
                    error = %error,
                    "a batch lost with the database could not be written"
                ),
            }
        }
        result
    }

    async fn run_unless_committed<S: BatchStatement>(
        &mut self,
        statement: &S,
        requests: &[&S::Request],
    ) -> AppResult<Vec<S::Response>> {
        let committed = match statement.committed(self.get::<S>().await?, requests).await {
            Ok(committed) => committed,
            Err(error) => {
                self.conn = None;
                return Err(error);
            }
        };
        match committed {
            Some(responses) if responses.len() == requests.len() => Ok(responses),
            Some(_) => Err(AppError::internal(anyhow::anyhow!(
                "a committed batch answered the wrong number of responses"
            ))),
            None => self.run(statement, requests).await,
        }
    }
}

/// Fills `batch` with the requests waiting, at most [`MAX_BATCH`]: waits for one, then for `gather`
/// more before taking the rest. False once every sender is gone and nothing is left.
async fn next_batch<T>(
    jobs: &mut mpsc::UnboundedReceiver<T>,
    batch: &mut Vec<T>,
    gather: Duration,
) -> bool {
    if jobs.recv_many(batch, MAX_BATCH).await == 0 {
        return false;
    }
    if !gather.is_zero() && batch.len() < MAX_BATCH {
        tokio::time::sleep(gather).await;
        while batch.len() < MAX_BATCH {
            let Ok(job) = jobs.try_recv() else { break };
            batch.push(job);
        }
    }
    true
}

async fn writer<S: BatchStatement>(
    mut conn: WriterConnection,
    statement: Arc<S>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job<S>>>>,
    name: &'static str,
    vitals: Arc<Vitals>,
) {
    let mut batch: Vec<Job<S>> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut jobs = receiver.lock().await;
            if !next_batch(&mut jobs, &mut batch, S::GATHER).await {
                return;
            }
        }
        metrics::histogram!("db_batch_size", "statement" => name).record(batch.len() as f64);
        let _running = vitals.batch_running();
        let requests: Vec<&S::Request> = batch.iter().map(|job| &job.request).collect();
        match conn.run_surviving_loss(statement.as_ref(), &requests).await {
            Ok(responses) => {
                for (job, response) in batch.drain(..).zip(responses) {
                    let _ = job.done.send(Ok(response));
                }
            }
            Err(error) if batch.len() == 1 => {
                if let Some(job) = batch.pop() {
                    let _ = job.done.send(Err(error));
                }
            }
            Err(error) => {
                tracing::warn!(statement = name, error = %error.public_message(), size = batch.len(), "a batch failed; running its requests one by one");
                for job in batch.drain(..) {
                    let result = conn
                        .run_surviving_loss(statement.as_ref(), &[&job.request])
                        .await
                        .and_then(|responses| {
                            responses.into_iter().next().ok_or_else(|| {
                                AppError::internal(anyhow::anyhow!(
                                    "a batch of one got no response"
                                ))
                            })
                        });
                    let _ = job.done.send(result);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_takes_what_arrives_while_it_gathers_and_nothing_later() {
        let (sender, mut jobs) = mpsc::unbounded_channel();
        sender.send(1).unwrap();
        let late = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            late.send(2).unwrap();
            late.send(3).unwrap();
        });
        let mut batch = Vec::new();
        assert!(next_batch(&mut jobs, &mut batch, Duration::from_millis(200)).await);
        assert_eq!(batch, [1, 2, 3]);

        batch.clear();
        sender.send(6).unwrap();
        let started = tokio::time::Instant::now();
        assert!(next_batch(&mut jobs, &mut batch, Duration::from_millis(20)).await);
        assert_eq!(
            batch,
            [6],
            "a gather with nothing more to take ends on time"
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        batch.clear();
        sender.send(4).unwrap();
        let late = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            late.send(5).unwrap();
        });
        assert!(next_batch(&mut jobs, &mut batch, Duration::ZERO).await);
        assert_eq!(
            batch,
            [4],
            "without gathering, a batch runs with what is there"
        );

        batch.clear();
        drop(sender);
        assert!(next_batch(&mut jobs, &mut batch, Duration::ZERO).await);
        assert_eq!(batch, [5]);
        batch.clear();
        assert!(!next_batch(&mut jobs, &mut batch, Duration::ZERO).await);
    }
}
