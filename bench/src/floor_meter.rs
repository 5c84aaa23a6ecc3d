//! The least durable metering a relayed call can have, for the bare framework's `invokeMetered`: each
//! call's usage row (an id, a user and its tokens) is inserted and the call answers once its commit is
//! on disk, with group commit as the hub's meter does it — two writers, each on a connection of its
//! own, take every row waiting and insert them in one statement (one round trip, one commit). No
//! quota, no rollups, no idempotency keys, no live notifications: with the framework and the hub's
//! HTTP client, this bounds what `invokeTool` can reach under the rule that usage is durable before
//! the answer. The rows go to a database of their own (`bench_floor`) on the hub's PostgreSQL, with
//! its settings, recreated empty each time the bare server starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::{Client, NoTls};

/// The environment variable that gives the PostgreSQL cluster (a URL to its `postgres` database,
/// connecting as a role that may create databases).
pub const DATABASE_ENV: &str = "BENCH_FLOOR_DATABASE";

const DATABASE: &str = "bench_floor";
const WRITERS: usize = 2;
/// Most rows in one statement, as the hub's meter.
const MAX_BATCH: usize = 256;
/// One user for every row: the floor does not look anything up.
const USER: &str = "019a0000-0000-7000-8000-000000000001";

struct Job {
    tokens: i64,
    done: oneshot::Sender<Result<String, String>>,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct FloorMeter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl FloorMeter {
    /// Recreates the floor's database on the cluster at `url` and starts the writers.
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        let admin = connect(url).await?;
        // One statement per call: neither may run inside the transaction a multi-statement call is.
        for statement in [
            format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
            format!("CREATE DATABASE {DATABASE}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .context("cannot create the floor's database")?;
        }
        let floor_url = with_database(url, DATABASE)?;
        let schema = connect(&floor_url).await?;
        schema
            .batch_execute(
                "CREATE TABLE usage (id uuid PRIMARY KEY, user_id uuid NOT NULL, tokens bigint NOT NULL,
                                     created_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .context("cannot create the floor's table")?;
        let (jobs, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let ids = Arc::new(Ids::new());
        for _ in 0..WRITERS {
            let client = connect(&floor_url).await?;
            tokio::spawn(writer(client, Arc::clone(&receiver), Arc::clone(&ids)));
        }
        Ok(Self { jobs })
    }

    /// Records a call's tokens; answers its usage row's id once the row is durable.
    pub async fn write(&self, tokens: i64) -> Result<String, String> {
        let (done, answered) = oneshot::channel();
        self.jobs
            .send(Job { tokens, done })
            .map_err(|_| "the floor's writers stopped".to_owned())?;
        answered
            .await
            .map_err(|_| "the floor's writer stopped".to_owned())?
    }
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its path (the database) replaced by `database`.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = base.find("://").context("not a URL")? + 3;
    let path = base[scheme_end..].find('/').map(|i| scheme_end + i);
    let authority = &base[..path.unwrap_or(base.len())];
    Ok(format!("{authority}/{database}?{query}"))
}

/// Time-ordered row ids (as the hub's usage ids are), unique across runs: the start's seconds, then
/// a counter.
struct Ids {
    started: u64,
    next: AtomicU64,
}

impl Ids {
    fn new() -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            started,
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:08x}-{:04x}-7000-8000-{:012x}",
            self.started & 0xffff_ffff,
            (n >> 48) & 0xffff,
            n & 0xffff_ffff_ffff
        )
    }
}

async fn writer(client: Client, jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>, ids: Arc<Ids>) {
    let insert = match client
        .prepare(
            "INSERT INTO usage (id, user_id, tokens)
             SELECT id::uuid, $2::text::uuid, tokens FROM unnest($1::text[], $3::int8[]) AS u(id, tokens)",
        )
        .await
    {
        Ok(statement) => statement,
        Err(e) => {
            eprintln!("floor meter: cannot prepare its insert: {e}");
            return;
        }
    };
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = jobs.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let row_ids: Vec<String> = batch.iter().map(|_| ids.next()).collect();
        let tokens: Vec<i64> = batch.iter().map(|job| job.tokens).collect();
        let result = client
            .execute(&insert, &[&row_ids, &USER, &tokens])
            .await
            .map_err(|e| e.to_string());
        for (job, id) in batch.into_iter().zip(row_ids) {
            let _ = job.done.send(result.clone().map(|_| id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_a_socket_url() -> anyhow::Result<()> {
        assert_eq!(
            with_database(
                "postgresql:///postgres?user=postgres&host=%2Ftmp%2Fpg&port=5432",
                "bench_floor"
            )?,
            "postgresql:///bench_floor?user=postgres&host=%2Ftmp%2Fpg&port=5432"
        );
        assert_eq!(
            with_database("postgres://u@localhost:5432/hub", "bench_floor")?,
            "postgres://u@localhost:5432/bench_floor?"
        );
        Ok(())
    }

    #[test]
    fn row_ids_are_uuids_in_order() {
        let ids = Ids::new();
        let first = ids.next();
        let second = ids.next();
        assert_eq!(first.len(), 36);
        assert!(first < second, "{first} then {second}");
    }
}
