//! The pacing statement, batched (see `db::batch`): the requests that arrive together are paced in one
//! statement.

use std::sync::Arc;

use diesel_async::AsyncPgConnection;

use super::repo::{self, PaceRequest, Paced};
use super::slices::Slices;
use crate::db::DbPool;
use crate::db::batch::{BatchStatement, Batcher};
use crate::db::vitals::Vitals;
use crate::error::AppResult;

/// The pacing statement, batched. Cheap to clone.
#[derive(Clone)]
pub struct Pacer {
    batcher: Batcher<Pace>,
    /// This instance's slices of busy subjects' paces.
    pub slices: Arc<Slices>,
}

impl Pacer {
    /// Starts its writer on the current Tokio runtime.
    pub fn start(pool: DbPool, vitals: &Arc<Vitals>) -> Self {
        Self {
            batcher: Batcher::start(pool, Pace, 1, "pacing", Arc::clone(vitals)),
            slices: Arc::default(),
        }
    }

    /// Paces one request; see `pace_batch.sql`.
    pub async fn submit(&self, request: PaceRequest) -> AppResult<Paced> {
        self.batcher.submit(request).await
    }
}

struct Pace;

impl BatchStatement for Pace {
    type Request = PaceRequest;
    type Response = Paced;

    /// A pace lost in a crash only lets a subject start afresh, so commits do not wait for the disk.
    const SETTINGS: &'static str =
        "SET plan_cache_mode = force_generic_plan; SET synchronous_commit = off";

    /// A batch lost with the database is paced again once it is back (its requests may then count
    /// twice, which only errs on the strict side), so a restart does not refuse the first queries
    /// after it.
    const RETRY_AFTER_LOSS: std::time::Duration = std::time::Duration::from_secs(5);

    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        _writer: usize,
        requests: &[&PaceRequest],
    ) -> AppResult<Vec<Paced>> {
        Ok(repo::pace_batch(conn, requests).await?)
    }
}
