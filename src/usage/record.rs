//! Recording usage rows, as usage's part of the meter's one statement (see `db::compose` and
//! `gateway::meter`); their rollups follow after the answer (`roll`). Kept apart from `service`
//! because the meter lives in the shared state that services receive.

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::model::UsageEvent;
use super::repo;
use crate::billing::model::PlanTier;
use crate::db::compose::{Composed, Part};

/// The usage part of the meter's statement (see `db::compose`).
pub fn record_part() -> &'static Part {
    &repo::RECORD_BATCH
}

/// Binds the usage part for a batch of usage rows, each with the caller's plan tier at the time
/// (`None` without).
pub fn bind_records<'a>(
    query: Composed<'a>,
    events: &[(&UsageEvent, Option<PlanTier>)],
) -> Composed<'a> {
    repo::bind_record_batch(query, repo::event_columns(events))
}

/// Whether the usage row `id` was recorded: tells whether a batch whose answer was lost with its
/// connection committed (the rows of a batch commit together).
pub async fn recorded(conn: &mut AsyncPgConnection, id: Uuid) -> diesel::QueryResult<bool> {
    repo::exists(conn, id).await
}
