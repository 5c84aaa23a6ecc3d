//! Queries on `api_keys`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{ApiKeyRow, KeyLimits, NewApiKey};
use crate::db::schema::{api_keys, users};
use crate::users::model::UserRow;

/// Deletes every key of a user (the account is being deleted).
pub async fn delete_all_for_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::delete(api_keys::table.filter(api_keys::user_id.eq(user)))
        .execute(conn)
        .await
}

pub async fn insert(conn: &mut AsyncPgConnection, key: NewApiKey<'_>) -> QueryResult<ApiKeyRow> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await
}

/// The user's keys, newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::user_id.eq(user))
        .order(api_keys::created_at.desc())
        .select(ApiKeyRow::as_select())
        .load(conn)
        .await
}

pub async fn count_active_for_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<i64> {
    api_keys::table
        .filter(api_keys::user_id.eq(user))
        .filter(api_keys::revoked_at.is_null())
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(now)),
        )
        .count()
        .get_result(conn)
        .await
}

/// The key with this hash and its owner.
pub async fn find_by_hash(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<(ApiKeyRow, UserRow)>> {
    api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(hash))
        .select((ApiKeyRow::as_select(), UserRow::as_select()))
        .first(conn)
        .await
        .optional()
}

/// Revokes one of the user's keys (idempotent: the first revocation time stays); `None` when the
/// user has no such key.
/// The limits of key `id`, if it exists.
pub async fn limits_of(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<KeyLimits>> {
    api_keys::table
        .find(id)
        .select((api_keys::requests_per_minute, api_keys::token_budget))
        .first::<(Option<i32>, Option<i64>)>(conn)
        .await
        .optional()
        .map(|found| {
            found.map(|(requests_per_minute, token_budget)| KeyLimits {
                requests_per_minute,
                token_budget,
            })
        })
}

/// Sets the limits of `user`'s key `id` (revoked or not); `None` when the user has no such key.
pub async fn set_limits(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
    limits: KeyLimits,
) -> QueryResult<Option<ApiKeyRow>> {
    diesel::update(api_keys::table.find(id).filter(api_keys::user_id.eq(user)))
        .set((
            api_keys::requests_per_minute.eq(limits.requests_per_minute),
            api_keys::token_budget.eq(limits.token_budget),
        ))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn revoke(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<ApiKeyRow>> {
    diesel::update(
        api_keys::table
            .find(id)
            .filter(api_keys::user_id.eq(user))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Some(now)))
    .execute(conn)
    .await?;
    api_keys::table
        .find(id)
        .filter(api_keys::user_id.eq(user))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn touch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(api_keys::table.find(id))
        .set(api_keys::last_used_at.eq(Some(now)))
        .execute(conn)
        .await
}

/// Revokes any user's key (administrators); `None` when there is no such key.
pub async fn revoke_any(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<ApiKeyRow>> {
    diesel::update(
        api_keys::table
            .find(id)
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Some(now)))
    .execute(conn)
    .await?;
    api_keys::table
        .find(id)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Unrevoked keys that expire in `(now, until]`.
pub async fn expiring_between(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::revoked_at.is_null())
        .filter(api_keys::expires_at.gt(now))
        .filter(api_keys::expires_at.le(until))
        .select(ApiKeyRow::as_select())
        .load(conn)
        .await
}
