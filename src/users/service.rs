//! Profile rules and administrator accounts.

use chrono::Utc;
use uuid::Uuid;

use super::model::{Email, NewUser, Role, UserId, UserRow, check_password_strength, parse_name};
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

/// Renames the user now; a new email address changes only once its owner confirms it by mail.
#[tracing::instrument(skip_all, fields(user_id = %id.0))]
pub async fn update_profile(
    app: &AppState,
    id: UserId,
    name: Option<&str>,
    email: Option<&str>,
) -> AppResult<UserRow> {
    let name = name.map(parse_name).transpose()?;
    let email = email.map(|e| Email::parse(e, "email")).transpose()?;
    let mut user = get(app, id).await?;
    if let Some(name) = name {
        let mut conn = app.pool.get().await?;
        user = repo::update_name(&mut conn, id, &name).await?;
    }
    if let Some(email) = email
        && email.as_str() != user.email
    {
        crate::auth::service::request_email_change(app, &user, &email).await?;
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
            role: Role::Admin.as_db(),
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
