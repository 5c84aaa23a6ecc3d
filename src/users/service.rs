//! Profile rules and administrator accounts.

use chrono::Utc;
use uuid::Uuid;

use super::model::{
    Email, NewUser, Role, UserId, UserProfile, UserRow, check_password_strength, parse_name,
};
use super::repo;
use crate::app::AppState;
use crate::auth::password::PasswordHasher;
use crate::db::DbPool;
use crate::error::{AppError, AppResult};

pub async fn get(app: &AppState, id: UserId) -> AppResult<UserRow> {
    let mut conn = app.pool.get().await?;
    repo::find_by_id(&mut conn, id)
        .await?
        .ok_or_else(|| AppError::NotFound("No such user.".into()))
}

/// What the user sees of their own account, from the cache when it holds it.
pub async fn profile(app: &AppState, id: UserId) -> AppResult<UserProfile> {
    app.caches
        .profiles
        .get_or_load(id.0, async {
            let mut conn = app.pool.get().await?;
            let user = repo::find_by_id(&mut conn, id).await?;
            Ok::<_, AppError>(user.map(|u| UserProfile::from(&u)))
        })
        .await?
        .ok_or_else(|| AppError::NotFound("No such user.".into()))
}

/// Renames the user now; a new email address changes only once its owner confirms it by mail.
#[tracing::instrument(skip_all, fields(user_id = %id.0))]
pub async fn update_profile(
    app: &AppState,
    id: UserId,
    name: Option<&str>,
    email: Option<&str>,
    current_password: Option<&str>,
    origin: &crate::audit::service::Actor,
) -> AppResult<UserRow> {
    let name = name.map(parse_name).transpose()?;
    let email = email.map(|e| Email::parse(e, "email")).transpose()?;
    let mut user = get(app, id).await?;
    if let Some(name) = name {
        let mut conn = app.pool.get().await?;
        user = repo::update_name(&mut conn, id, &name).await?;
        // This instance's next `me` shows the new name; others follow the trigger's notification.
        app.caches.invalidate_user(id.0);
    }
    if let Some(email) = email
        && email.as_str() != user.email
    {
        crate::auth::email_change::request_email_change(
            app,
            &user,
            &email,
            current_password,
            origin,
        )
        .await?;
    }
    Ok(user)
}

/// What `create_admin` did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminSeed {
    Created(Uuid),
    /// An account with that address exists; it was left exactly as it was.
    AlreadyExists,
}

/// Creates an administrator (verified address) unless the address is taken; never changes an
/// existing account.
pub async fn create_admin(
    pool: &DbPool,
    hasher: &PasswordHasher,
    email: &str,
    password: &str,
    name: &str,
) -> AppResult<AdminSeed> {
    let email = Email::parse(email, "email")?;
    check_password_strength(password, "password")?;
    let name = parse_name(name)?;
    let mut conn = pool.get().await?;
    if repo::find_by_email(&mut conn, email.as_str())
        .await?
        .is_some()
    {
        return Ok(AdminSeed::AlreadyExists);
    }
    let password_hash = hasher.hash(password).await?;
    let result = repo::insert(
        &mut conn,
        NewUser {
            id: Uuid::now_v7(),
            email: email.as_str(),
            name: &name,
            password_hash: &password_hash,
            role: Role::Admin,
            email_verified_at: Some(Utc::now()),
        },
    )
    .await;
    match result {
        Ok(user) => {
            tracing::info!(user_id = %user.id, email = %email.masked(), "administrator created");
            Ok(AdminSeed::Created(user.id))
        }
        // Another instance created it in the meantime.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(AdminSeed::AlreadyExists),
        Err(e) => Err(e.into()),
    }
}

/// An administrator's view of one page of users.
pub struct UserPage {
    pub users: Vec<(UserRow, super::model::Listed)>,
    pub has_next: bool,
    pub total: i64,
}

/// Lists users for administrators: filtered, sorted, keyset-paged.
pub async fn admin_list(
    app: &AppState,
    filter: &super::model::ListFilter,
    sort: super::model::ListSort,
    after: Option<&super::model::Listed>,
    first: i64,
) -> AppResult<UserPage> {
    let mut conn = app.pool.get().await?;
    let mut listed = repo::list(&mut conn, filter, sort, after, first + 1).await?;
    let limit = usize::try_from(first).unwrap_or(usize::MAX);
    let has_next = listed.len() > limit;
    listed.truncate(limit);
    let ids: Vec<Uuid> = listed.iter().map(|l| l.id).collect();
    let mut rows: std::collections::HashMap<Uuid, UserRow> = repo::find_many(&mut conn, &ids)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let users = listed
        .into_iter()
        .filter_map(|l| rows.remove(&l.id).map(|row| (row, l)))
        .collect();
    let total = repo::count_listed(&mut conn, filter).await?;
    Ok(UserPage {
        users,
        has_next,
        total,
    })
}

fn audit_view(row: &UserRow) -> serde_json::Value {
    serde_json::json!({ "name": row.name, "role": row.role, "status": row.status })
}

/// Creates an account for someone (administrators); the address counts as verified.
#[tracing::instrument(skip_all)]
pub async fn admin_create(
    app: &AppState,
    actor: &crate::audit::service::Actor,
    name: &str,
    email: &str,
    password: &str,
    role: Role,
) -> AppResult<UserRow> {
    let name = parse_name(name)?;
    let email = Email::parse(email, "email")?;
    check_password_strength(password, "password")?;
    let password_hash = app.hasher.hash(password).await?;
    let mut conn = app.pool.get().await?;
    let row =
        diesel_async::AsyncConnection::transaction::<_, AppError, _>(&mut *conn, async |conn| {
            let row = repo::insert(
                conn,
                NewUser {
                    id: Uuid::now_v7(),
                    email: email.as_str(),
                    name: &name,
                    password_hash: &password_hash,
                    role,
                    email_verified_at: Some(Utc::now()),
                },
            )
            .await?;
            let created =
                serde_json::json!({ "email": email.masked(), "name": row.name, "role": row.role });
            audit_user(conn, actor, "user.create", row.id, None, Some(created)).await?;
            Ok(row)
        })
        .await?;
    Ok(row)
}

fn last_admin() -> AppError {
    AppError::Conflict("This is the last active administrator: promote someone else first.".into())
}

/// Renames, changes the role of, suspends or reactivates an account (administrators). A suspended
/// account's tokens and keys stop working on its next request. No change may leave the platform
/// without an active administrator.
#[tracing::instrument(skip_all, fields(target = %target.0))]
pub async fn admin_update(
    app: &AppState,
    actor: &crate::audit::service::Actor,
    target: UserId,
    name: Option<&str>,
    role: Option<Role>,
    status: Option<super::model::UserStatus>,
) -> AppResult<UserRow> {
    let name = name.map(parse_name).transpose()?;
    let mut conn = app.pool.get().await?;
    let row =
        diesel_async::AsyncConnection::transaction::<_, AppError, _>(&mut *conn, async |conn| {
            let admins = repo::lock_active_admins(conn).await?;
            let before = repo::find_by_id(conn, target)
                .await?
                .filter(|u| u.deleted_at.is_none())
                .ok_or_else(|| AppError::NotFound("No such user.".into()))?;
            let loses_admin = role.is_some_and(|r| r != Role::Admin)
                || status.is_some_and(|s| s == super::model::UserStatus::Suspended);
            if loses_admin && admins.contains(&before.id) && admins.len() <= 1 {
                return Err(last_admin());
            }
            let changes = repo::AdminChanges { name, role, status };
            let after = repo::apply_admin_changes(conn, before.id, &changes).await?;
            let (old, new) = crate::audit::service::diff(&audit_view(&before), &audit_view(&after));
            audit_user(conn, actor, "user.update", after.id, Some(old), Some(new)).await?;
            Ok(after)
        })
        .await?;
    app.caches.invalidate_user(row.id);
    Ok(row)
}

/// Deletes an account (administrators): personal data and credentials go, usage stays for statistics.
#[tracing::instrument(skip_all, fields(target = %target.0))]
pub async fn admin_delete(
    app: &AppState,
    actor: &crate::audit::service::Actor,
    target: UserId,
) -> AppResult<()> {
    let mut conn = app.pool.get().await?;
    diesel_async::AsyncConnection::transaction::<_, AppError, _>(&mut *conn, async |conn| {
        let admins = repo::lock_active_admins(conn).await?;
        let before = repo::find_by_id(conn, target)
            .await?
            .filter(|u| u.deleted_at.is_none())
            .ok_or_else(|| AppError::NotFound("No such user.".into()))?;
        if admins.contains(&before.id) && admins.len() <= 1 {
            return Err(last_admin());
        }
        // Personal data and credentials go; usage stays for statistics. Each owner forgets its part.
        let now = app.clock.now();
        repo::anonymize(conn, before.id, now).await?;
        crate::auth::service::forget_user_in(conn, target).await?;
        crate::keys::service::forget_user_in(conn, target).await?;
        crate::gateway::service::forget_user_in(conn, target).await?;
        crate::billing::service::forget_user_in(conn, target, now).await?;
        crate::mail::outbox::forget_user_in(conn, target.0).await?;
        crate::notifications::service::forget_user_in(conn, target.0).await?;
        crate::webhooks::service::forget_user_in(conn, target.0).await?;
        repo::delete_preferences(conn, target.0).await?;
        let masked =
            Email::parse(&before.email, "email").map_or_else(|_| "***".to_owned(), |e| e.masked());
        let removed =
            serde_json::json!({ "email": masked, "role": before.role, "status": before.status });
        audit_user(conn, actor, "user.delete", before.id, Some(removed), None).await?;
        Ok(())
    })
    .await?;
    app.caches.invalidate_user(target.0);
    Ok(())
}

/// Accounts in all, and created in `[from, to)` (deleted accounts left out), from the read replica.
pub async fn counts(
    app: &AppState,
    from: Option<chrono::DateTime<Utc>>,
    to: Option<chrono::DateTime<Utc>>,
) -> AppResult<(i64, i64)> {
    use crate::db::schema::users;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let mut conn = app.read_pool.get().await?;
    let total: i64 = users::table
        .filter(users::deleted_at.is_null())
        .count()
        .get_result(&mut conn)
        .await?;
    let mut new = users::table
        .filter(users::deleted_at.is_null())
        .into_boxed();
    if let Some(from) = from {
        new = new.filter(users::created_at.ge(from));
    }
    if let Some(to) = to {
        new = new.filter(users::created_at.lt(to));
    }
    let new: i64 = new.count().get_result(&mut conn).await?;
    Ok((total, new))
}

/// Appends an administrator's action on an account to the audit trail, in the caller's transaction.
async fn audit_user(
    conn: &mut diesel_async::AsyncPgConnection,
    actor: &crate::audit::service::Actor,
    action: &str,
    target: Uuid,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> diesel::QueryResult<()> {
    crate::audit::service::record_in(
        conn,
        actor,
        crate::audit::service::Event {
            action,
            target_type: "user",
            target_id: Some(target.to_string()),
            before,
            after,
        },
    )
    .await
}
