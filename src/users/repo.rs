//! Queries on `users`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{NewUser, UserId, UserRow};
use crate::db::schema::users;

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut AsyncPgConnection, user: NewUser<'_>) -> QueryResult<UserRow> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find_by_id(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id.0)
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn email_taken(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table.filter(users::email.eq(email)),
    ))
    .get_result(conn)
    .await
}

pub async fn update_name(
    conn: &mut AsyncPgConnection,
    id: UserId,
    name: &str,
) -> QueryResult<UserRow> {
    diesel::update(users::table.find(id.0))
        .set(users::name.eq(name))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Sets a new password hash and bumps the session version, which ends every access token.
pub async fn update_password(
    conn: &mut AsyncPgConnection,
    id: UserId,
    password_hash: &str,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id.0))
        .set((
            users::password_hash.eq(password_hash),
            users::session_version.eq(users::session_version + 1),
        ))
        .execute(conn)
        .await
}

/// Marks `email` verified, making it the user's address (an email change).
pub async fn set_verified_email(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    email: &str,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::email.eq(email),
            users::email_verified_at.eq(Some(at)),
        ))
        .execute(conn)
        .await
}

/// Marks the current address verified, if it still is `email`.
pub async fn mark_verified_if_current(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    email: &str,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        users::table
            .find(id)
            .filter(users::email.eq(email))
            .filter(users::email_verified_at.is_null()),
    )
    .set(users::email_verified_at.eq(Some(at)))
    .execute(conn)
    .await
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: UserId,
    status: &str,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id.0))
        .set(users::status.eq(status))
        .execute(conn)
        .await
}
