//! Queries on `users`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{
    ListFilter, ListSort, Listed, NewUser, PreferencesRow, Role, UserId, UserRow, UserStatus,
};
use crate::db::schema::{user_preferences, users};

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

/// Puts a previous address back (an email change its owner cancelled) and bumps the session version,
/// which ends every access token.
pub async fn restore_email(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    email: &str,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((
            users::email.eq(email),
            users::email_verified_at.eq(Some(at)),
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

/// The FROM and WHERE of the user list; see the file's opening comment.
const LIST_FROM: &str = include_str!("list_filter.sql");

fn like_pattern(search: Option<&String>) -> Option<String> {
    search.map(|s| {
        format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    })
}

/// One page of user ids with their sort keys, after `after` (a `Listed` from the previous page).
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    sort: ListSort,
    after: Option<&Listed>,
    limit: i64,
) -> QueryResult<Vec<Listed>> {
    use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
    let (keyset, order) = match sort {
        ListSort::CreatedAt => (
            "(u.created_at, u.id) < ($5, $6)",
            "u.created_at DESC, u.id DESC",
        ),
        ListSort::Name => ("(lower(u.name), u.id) > ($7, $6)", "lower(u.name), u.id"),
        ListSort::TokensUsed => (
            "(COALESCE(s.tokens_used, 0), u.id) < ($8, $6)",
            "COALESCE(s.tokens_used, 0) DESC, u.id DESC",
        ),
    };
    let sql = format!(
        "SELECT u.id, u.created_at, lower(u.name) AS name_key, COALESCE(s.tokens_used, 0)::bigint AS tokens_key\n{LIST_FROM}\n\
         AND ($6::uuid IS NULL OR {keyset}) ORDER BY {order} LIMIT $9"
    );
    diesel::sql_query(sql)
        .bind::<Nullable<Text>, _>(like_pattern(filter.search.as_ref()))
        .bind::<Nullable<Text>, _>(filter.role)
        .bind::<Nullable<Text>, _>(filter.status)
        .bind::<Nullable<Text>, _>(filter.tier)
        .bind::<Nullable<Timestamptz>, _>(after.map(|a| a.created_at))
        .bind::<Nullable<diesel::sql_types::Uuid>, _>(after.map(|a| a.id))
        .bind::<Nullable<Text>, _>(after.map(|a| a.name_key.clone()))
        .bind::<Nullable<BigInt>, _>(after.map(|a| a.tokens_key))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await
}

pub async fn count_listed(conn: &mut AsyncPgConnection, filter: &ListFilter) -> QueryResult<i64> {
    use diesel::sql_types::{Nullable, Text};
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(format!("SELECT count(*) AS n\n{LIST_FROM}"))
        .bind::<Nullable<Text>, _>(like_pattern(filter.search.as_ref()))
        .bind::<Nullable<Text>, _>(filter.role)
        .bind::<Nullable<Text>, _>(filter.status)
        .bind::<Nullable<Text>, _>(filter.tier)
        .get_result(conn)
        .await?;
    Ok(count.n)
}

pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<UserRow>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(conn)
        .await
}

/// Locks every active administrator (so two demotions cannot both pass the last-admin rule) and
/// returns their ids.
/// The ids of the active administrators.
pub async fn active_admin_ids(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Uuid>> {
    users::table
        .filter(users::role.eq(Role::Admin))
        .filter(users::status.eq(UserStatus::Active))
        .filter(users::deleted_at.is_null())
        .select(users::id)
        .load(conn)
        .await
}

pub async fn lock_active_admins(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Uuid>> {
    users::table
        .filter(users::role.eq(Role::Admin))
        .filter(users::status.eq(UserStatus::Active))
        .filter(users::deleted_at.is_null())
        .select(users::id)
        .for_update()
        .load(conn)
        .await
}

/// Changes of an administrator to an account; `None` leaves a column as it is.
#[derive(AsChangeset, Default)]
#[diesel(table_name = users)]
pub struct AdminChanges {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

pub async fn apply_admin_changes(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &AdminChanges,
) -> QueryResult<UserRow> {
    diesel::update(users::table.find(id).filter(users::deleted_at.is_null()))
        .set(changes)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Removes a person from an account: personal data replaced, credentials and sessions gone, the current
/// subscription ended. The row (and its id) stays, so usage keeps counting in platform statistics.
pub async fn anonymize(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    use diesel::sql_types::{Timestamptz, Uuid as SqlUuid};
    diesel::sql_query(
        "UPDATE users SET email = 'deleted-' || id || '@deleted.invalid', name = 'Deleted user', password_hash = '!', \
         status = 'SUSPENDED', email_verified_at = NULL, deleted_at = $2, session_version = session_version + 1 WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn preferences(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Option<PreferencesRow>> {
    user_preferences::table
        .find(user)
        .select(PreferencesRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn save_preferences(
    conn: &mut AsyncPgConnection,
    row: &PreferencesRow,
) -> QueryResult<usize> {
    diesel::insert_into(user_preferences::table)
        .values(row)
        .on_conflict(user_preferences::user_id)
        .do_update()
        .set(row)
        .execute(conn)
        .await
}

pub async fn delete_preferences(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::delete(user_preferences::table.find(user))
        .execute(conn)
        .await
}
