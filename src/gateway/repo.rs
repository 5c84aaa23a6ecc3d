//! Queries on `invocation_idempotency`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{invocation_idempotency, usage_events};
use crate::usage::model::UsageEvent;

/// What an idempotency key says about a new call.
pub enum Claim {
    /// This call owns the key: go ahead.
    Claimed,
    /// The key's first call finished: answer with its result.
    Replay {
        event: UsageEvent,
        output: serde_json::Value,
    },
    /// The first call is still running.
    InProgress,
    /// The key was used with another tool.
    OtherTool,
}

pub async fn claim(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    tool: Uuid,
    now: DateTime<Utc>,
    claim_until: DateTime<Utc>,
) -> QueryResult<Claim> {
    let inserted = diesel::insert_into(invocation_idempotency::table)
        .values((
            invocation_idempotency::user_id.eq(user),
            invocation_idempotency::key.eq(key),
            invocation_idempotency::tool_id.eq(tool),
            invocation_idempotency::claim_expires_at.eq(claim_until),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    let (tool_id, event_id, output, expires): (
        Uuid,
        Option<Uuid>,
        Option<serde_json::Value>,
        DateTime<Utc>,
    ) = invocation_idempotency::table
        .find((user, key))
        .select((
            invocation_idempotency::tool_id,
            invocation_idempotency::usage_event_id,
            invocation_idempotency::output,
            invocation_idempotency::claim_expires_at,
        ))
        .first(conn)
        .await?;
    if tool_id != tool {
        return Ok(Claim::OtherTool);
    }
    if let Some(event_id) = event_id {
        let event = usage_events::table
            .find(event_id)
            .select(UsageEvent::as_select())
            .first(conn)
            .await?;
        return Ok(Claim::Replay {
            event,
            output: output.unwrap_or(serde_json::Value::Null),
        });
    }
    if expires <= now {
        // The first call's process died; take the key over.
        let taken = diesel::update(
            invocation_idempotency::table
                .find((user, key))
                .filter(invocation_idempotency::usage_event_id.is_null())
                .filter(invocation_idempotency::claim_expires_at.le(now)),
        )
        .set(invocation_idempotency::claim_expires_at.eq(claim_until))
        .execute(conn)
        .await?;
        if taken == 1 {
            return Ok(Claim::Claimed);
        }
    }
    Ok(Claim::InProgress)
}

/// Deletes every idempotency key of a user (the account is being deleted).
pub async fn delete_all_for_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::delete(invocation_idempotency::table.filter(invocation_idempotency::user_id.eq(user)))
        .execute(conn)
        .await
}

/// Stores the first result for replays.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    event: Uuid,
    output: &serde_json::Value,
) -> QueryResult<usize> {
    diesel::update(invocation_idempotency::table.find((user, key)))
        .set((
            invocation_idempotency::usage_event_id.eq(Some(event)),
            invocation_idempotency::output.eq(Some(output)),
        ))
        .execute(conn)
        .await
}

/// Frees a key whose call failed, so a retry with it runs again.
pub async fn abandon(conn: &mut AsyncPgConnection, user: Uuid, key: &str) -> QueryResult<usize> {
    diesel::delete(
        invocation_idempotency::table
            .find((user, key))
            .filter(invocation_idempotency::usage_event_id.is_null()),
    )
    .execute(conn)
    .await
}
