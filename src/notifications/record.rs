//! Recording an event in the transaction of the change that causes it (`outbox_events`); the
//! dispatcher (`outbox`) tells people about it after the commit.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde_json::Value;
use uuid::Uuid;

use super::model::{EventType, NewOutboxEvent};
use super::repo;

/// Records `event` about `user` (`None` for a platform event) in the caller's transaction.
pub async fn record_in(
    conn: &mut AsyncPgConnection,
    event: EventType,
    user: Option<Uuid>,
    payload: Value,
) -> diesel::QueryResult<()> {
    record(conn, event, user, &payload, None).await
}

/// Records `event` unless an event with the same `key` was recorded before (a period's renewal
/// notice, say).
pub async fn record_once_in(
    conn: &mut AsyncPgConnection,
    event: EventType,
    user: Option<Uuid>,
    payload: Value,
    key: &str,
) -> diesel::QueryResult<()> {
    record(conn, event, user, &payload, Some(key)).await
}

async fn record(
    conn: &mut AsyncPgConnection,
    event: EventType,
    user: Option<Uuid>,
    payload: &Value,
    key: Option<&str>,
) -> diesel::QueryResult<()> {
    repo::insert_event(
        conn,
        &NewOutboxEvent {
            id: Uuid::now_v7(),
            kind: event,
            user_id: user,
            payload,
            dedupe_key: key,
            created_at: Utc::now(),
        },
    )
    .await?;
    Ok(())
}
