//! Queries on `invocation_idempotency`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use diesel::sql_types::{Array, Jsonb, Text, Uuid as SqlUuid};

use crate::db::compose::{Composed, Part};
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

/// `key_outcomes.sql`: a part of the meter's statement (see `db::compose`).
pub const KEY_OUTCOMES: Part = Part::new(include_str!("key_outcomes.sql"), 6);

/// What a batch of metered calls does to their idempotency keys, as columns.
#[derive(Debug, Default)]
pub struct KeyOutcomeColumns<'a> {
    pub done_users: Vec<Uuid>,
    pub done_keys: Vec<&'a str>,
    pub done_events: Vec<Uuid>,
    pub done_outputs: Vec<&'a serde_json::Value>,
    pub freed_users: Vec<Uuid>,
    pub freed_keys: Vec<&'a str>,
}

impl KeyOutcomeColumns<'_> {
    /// Whether the batch settles no idempotency key (and its statement can leave the part out).
    pub fn is_empty(&self) -> bool {
        self.done_users.is_empty() && self.freed_users.is_empty()
    }
}

/// Binds [`KEY_OUTCOMES`]'s parameters.
pub fn bind_key_outcomes<'a>(query: Composed<'a>, columns: KeyOutcomeColumns<'a>) -> Composed<'a> {
    query
        .bind::<Array<SqlUuid>, _>(columns.done_users)
        .bind::<Array<Text>, _>(columns.done_keys)
        .bind::<Array<SqlUuid>, _>(columns.done_events)
        .bind::<Array<Jsonb>, _>(columns.done_outputs)
        .bind::<Array<SqlUuid>, _>(columns.freed_users)
        .bind::<Array<Text>, _>(columns.freed_keys)
}
