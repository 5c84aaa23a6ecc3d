//! Queries on `webhook_endpoints`, `webhook_deliveries` and `webhook_attempts`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{AttemptRow, DeliveryRow, DeliveryStatus, EndpointRow};
use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};

pub async fn insert_endpoint(
    conn: &mut AsyncPgConnection,
    row: &EndpointRow,
) -> QueryResult<usize> {
    diesel::insert_into(webhook_endpoints::table)
        .values(row)
        .execute(conn)
        .await
}

pub async fn endpoints_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<EndpointRow>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::user_id.eq(user))
        .order(webhook_endpoints::created_at)
        .select(EndpointRow::as_select())
        .load(conn)
        .await
}

pub async fn endpoint(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<EndpointRow>> {
    webhook_endpoints::table
        .find(id)
        .select(EndpointRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The endpoint `id` locked for an update, in the caller's transaction.
pub async fn lock_endpoint(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<EndpointRow>> {
    webhook_endpoints::table
        .find(id)
        .for_update()
        .select(EndpointRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Writes every column of `row` but its id, owner and creation time.
pub async fn save_endpoint(conn: &mut AsyncPgConnection, row: &EndpointRow) -> QueryResult<usize> {
    diesel::update(webhook_endpoints::table.find(row.id))
        .set((
            webhook_endpoints::url.eq(&row.url),
            webhook_endpoints::description.eq(&row.description),
            webhook_endpoints::events.eq(&row.events),
            webhook_endpoints::secret_nonce.eq(&row.secret_nonce),
            webhook_endpoints::secret_ciphertext.eq(&row.secret_ciphertext),
            webhook_endpoints::previous_nonce.eq(&row.previous_nonce),
            webhook_endpoints::previous_ciphertext.eq(&row.previous_ciphertext),
            webhook_endpoints::previous_until.eq(row.previous_until),
            webhook_endpoints::enabled.eq(row.enabled),
            webhook_endpoints::disabled_reason.eq(&row.disabled_reason),
            webhook_endpoints::failing_since.eq(row.failing_since),
            webhook_endpoints::updated_at.eq(row.updated_at),
        ))
        .execute(conn)
        .await
}

pub async fn delete_endpoint(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(webhook_endpoints::table.find(id))
        .execute(conn)
        .await
}

pub async fn count_endpoints(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<i64> {
    webhook_endpoints::table
        .filter(webhook_endpoints::user_id.eq(user))
        .count()
        .get_result(conn)
        .await
}

pub async fn insert_delivery(
    conn: &mut AsyncPgConnection,
    row: &DeliveryRow,
) -> QueryResult<usize> {
    diesel::insert_into(webhook_deliveries::table)
        .values(row)
        .execute(conn)
        .await
}

pub async fn delivery(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<DeliveryRow>> {
    webhook_deliveries::table
        .find(id)
        .select(DeliveryRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Claims up to `limit` due deliveries (or only `only`), skipping those another worker holds: each is
/// counted as attempted and not due again before `until`.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
    only: Option<Uuid>,
) -> QueryResult<Vec<DeliveryRow>> {
    diesel::sql_query(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $2 \
         WHERE id IN (SELECT id FROM webhook_deliveries \
                      WHERE status = 'PENDING' AND next_attempt_at <= $1 \
                        AND ($4::uuid IS NULL OR id = $4) \
                      ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(until)
    .bind::<BigInt, _>(limit)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(only)
    .load(conn)
    .await
}

/// Records how an attempt at delivery `id` ended.
pub async fn finish_attempt(
    conn: &mut AsyncPgConnection,
    attempt: &AttemptRow,
    status: DeliveryStatus,
    next: DateTime<Utc>,
    error: Option<&str>,
) -> QueryResult<usize> {
    diesel::insert_into(webhook_attempts::table)
        .values(attempt)
        .execute(conn)
        .await?;
    let delivered_at = (status == DeliveryStatus::Delivered).then_some(attempt.attempted_at);
    diesel::update(webhook_deliveries::table.find(attempt.delivery_id))
        .set((
            webhook_deliveries::status.eq(status),
            webhook_deliveries::next_attempt_at.eq(next),
            webhook_deliveries::last_status_code.eq(attempt.status_code),
            webhook_deliveries::last_error.eq(error),
            webhook_deliveries::delivered_at.eq(delivered_at),
        ))
        .execute(conn)
        .await
}

/// Gives up every pending delivery to endpoint `id` (it was disabled).
pub async fn fail_pending_of(
    conn: &mut AsyncPgConnection,
    endpoint: Uuid,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(endpoint))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending)),
    )
    .set((
        webhook_deliveries::status.eq(DeliveryStatus::Failed),
        webhook_deliveries::last_error.eq(Some(reason)),
    ))
    .execute(conn)
    .await
}

/// One page of an endpoint's deliveries, newest first, after the `(created_at, id)` cursor.
pub async fn deliveries_page(
    conn: &mut AsyncPgConnection,
    endpoint: Uuid,
    status: Option<DeliveryStatus>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint))
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(webhook_deliveries::status.eq(status));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            webhook_deliveries::created_at
                .lt(at)
                .or(webhook_deliveries::created_at
                    .eq(at)
                    .and(webhook_deliveries::id.lt(id))),
        );
    }
    query
        .order((
            webhook_deliveries::created_at.desc(),
            webhook_deliveries::id.desc(),
        ))
        .limit(limit)
        .select(DeliveryRow::as_select())
        .load(conn)
        .await
}

/// The attempts at the given deliveries, oldest first.
pub async fn attempts_of(
    conn: &mut AsyncPgConnection,
    deliveries: &[Uuid],
) -> QueryResult<Vec<AttemptRow>> {
    webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(deliveries))
        .order(webhook_attempts::attempted_at)
        .select(AttemptRow::as_select())
        .load(conn)
        .await
}

/// Deletes finished deliveries (and their attempts) created before `before`.
pub async fn delete_finished_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(
        webhook_deliveries::table
            .filter(webhook_deliveries::status.ne(DeliveryStatus::Pending))
            .filter(webhook_deliveries::created_at.lt(before)),
    )
    .execute(conn)
    .await
}

pub async fn delete_for_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::delete(webhook_endpoints::table.filter(webhook_endpoints::user_id.eq(user)))
        .execute(conn)
        .await
}
