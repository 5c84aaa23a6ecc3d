//! Queries on `refresh_tokens`, `email_tokens` and `login_throttle`.

use crate::db::cached::CachedExt;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Interval, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{EmailTokenRow, MailPurpose, NewEmailToken, NewRefreshToken, RefreshTokenRow};
use crate::db::schema::{email_tokens, ended_sessions, login_throttle, refresh_tokens};

pub async fn insert_refresh_token(
    conn: &mut AsyncPgConnection,
    token: NewRefreshToken<'_>,
) -> QueryResult<usize> {
    diesel::insert_into(refresh_tokens::table)
        .values(token)
        .execute(conn)
        .await
}

pub async fn find_refresh_token(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<RefreshTokenRow>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks a token used, only if nobody else did first; false means it was already used or revoked.
pub async fn claim_refresh_token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let updated = diesel::update(
        refresh_tokens::table
            .find(id)
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(Some(now)))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

pub async fn revoke_family(
    conn: &mut AsyncPgConnection,
    family: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Some(now)))
    .execute(conn)
    .await
}

pub async fn revoke_all_for_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Some(now)))
    .execute(conn)
    .await
}

/// Deletes every refresh and mail token of a user (the account is being deleted).
pub async fn delete_tokens_of_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<()> {
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::user_id.eq(user)))
        .execute(conn)
        .await?;
    diesel::delete(email_tokens::table.filter(email_tokens::user_id.eq(user)))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_email_token(
    conn: &mut AsyncPgConnection,
    token: NewEmailToken<'_>,
) -> QueryResult<usize> {
    diesel::insert_into(email_tokens::table)
        .values(token)
        .execute(conn)
        .await
}

/// Uses a mail token once: marks it used and returns it, if it exists, has one of `purposes`, is unused
/// and unexpired. Atomic, so two concurrent uses cannot both succeed.
pub async fn consume_email_token(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    purposes: &[MailPurpose],
    now: DateTime<Utc>,
) -> QueryResult<Option<EmailTokenRow>> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::token_hash.eq(hash))
            .filter(email_tokens::purpose.eq_any(purposes.iter().copied()))
            .filter(email_tokens::used_at.is_null())
            .filter(email_tokens::expires_at.gt(now)),
    )
    .set(email_tokens::used_at.eq(Some(now)))
    .returning(EmailTokenRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Retires every outstanding token of `purpose` for a user (after a reset, older links stop working).
pub async fn retire_email_tokens(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    purpose: MailPurpose,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user))
            .filter(email_tokens::purpose.eq(purpose))
            .filter(email_tokens::used_at.is_null()),
    )
    .set(email_tokens::used_at.eq(Some(now)))
    .execute(conn)
    .await
}

/// How many tokens of `purpose` went to a user since `since` (to bound mail sent on request).
pub async fn count_recent_email_tokens(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    purpose: MailPurpose,
    since: DateTime<Utc>,
) -> QueryResult<i64> {
    email_tokens::table
        .filter(email_tokens::user_id.eq(user))
        .filter(email_tokens::purpose.eq(purpose))
        .filter(email_tokens::created_at.gt(since))
        .count()
        .get_result(conn)
        .await
}

/// A throttle counter: failures in the window that started at `window_started_at`.
#[derive(QueryableByName, Queryable, Debug, Clone)]
pub struct ThrottleRow {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = Integer)]
    pub failures: i32,
    #[diesel(sql_type = Timestamptz)]
    pub window_started_at: DateTime<Utc>,
}

/// Runs `count_attempt.sql`: one more attempt on `key`, atomically.
pub async fn count_attempt(
    conn: &mut AsyncPgConnection,
    key: &str,
    now: DateTime<Utc>,
    window: std::time::Duration,
) -> QueryResult<ThrottleRow> {
    let window = diesel::data_types::PgInterval::from_microseconds(
        i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
    );
    diesel::sql_query(include_str!("count_attempt.sql"))
        .bind::<Text, _>(key)
        .bind::<Timestamptz, _>(now)
        .bind::<Interval, _>(window)
        .cached()
        .get_result(conn)
        .await
}

pub async fn reset_throttle(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(login_throttle::table.filter(login_throttle::key.eq(key)))
        .execute(conn)
        .await
}

/// Takes one attempt off `key`'s count.
pub async fn uncount(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<usize> {
    diesel::update(login_throttle::table.filter(login_throttle::key.eq(key)))
        .set(login_throttle::failures.eq(diesel::dsl::sql::<Integer>("GREATEST(failures - 1, 0)")))
        .execute(conn)
        .await
}

/// Records that a session ended (idempotent).
pub async fn end_session(
    conn: &mut AsyncPgConnection,
    family: Uuid,
    user: Uuid,
    now: DateTime<Utc>,
    forget_after: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::insert_into(ended_sessions::table)
        .values((
            ended_sessions::family_id.eq(family),
            ended_sessions::user_id.eq(user),
            ended_sessions::ended_at.eq(now),
            ended_sessions::forget_after.eq(forget_after),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

/// The sessions of a user that ended while some of their access tokens may still be unexpired.
pub async fn ended_sessions_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    ended_sessions::table
        .filter(ended_sessions::user_id.eq(user))
        .filter(ended_sessions::forget_after.gt(now))
        .select(ended_sessions::family_id)
        .load(conn)
        .await
}

/// Deletes ended sessions past their `forget_after`; returns how many went.
pub async fn forget_ended_sessions(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(ended_sessions::table.filter(ended_sessions::forget_after.le(now)))
        .execute(conn)
        .await
}

pub async fn delete_ended_sessions_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<usize> {
    diesel::delete(ended_sessions::table.filter(ended_sessions::user_id.eq(user)))
        .execute(conn)
        .await
}

/// Whether an unused, unexpired token of `purpose` has this hash (it is not consumed).
pub async fn email_token_usable(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    purpose: MailPurpose,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        email_tokens::table
            .filter(email_tokens::token_hash.eq(hash))
            .filter(email_tokens::purpose.eq(purpose))
            .filter(email_tokens::used_at.is_null())
            .filter(email_tokens::expires_at.gt(now)),
    ))
    .get_result(conn)
    .await
}
