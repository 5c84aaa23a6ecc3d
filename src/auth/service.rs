//! The rules of signing up, logging in and staying logged in.
//!
//! - Access tokens are short-lived JWTs; refresh tokens are opaque, stored hashed, and rotate on every
//!   use. A used refresh token presented again means it was stolen: the whole family is revoked.
//! - Password hashing never holds a database connection, so a login storm cannot drain the pool.
//! - Mail tokens are single-use, hashed and time-limited. Asking for a reset answers the same whether or
//!   not the address exists, and does the work in the background so timing says nothing either.

use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::Instrument;
use uuid::Uuid;

use super::model::{MailPurpose, NewEmailToken, NewRefreshToken};
use super::repo;
use super::throttle::{self, Verdict};
use super::tokens::{hash_token, issue_access_token, random_token};
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::mail::action_mail;
use crate::users::model::{
    Email, NewUser, Role, UserId, UserRow, UserStatus, check_password_strength, parse_name,
};
use crate::users::repo as users;

/// What a successful login, registration or refresh hands out.
pub struct Session {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub user: UserRow,
}

const REFRESH_PREFIX: &str = "jhr_";
const WRONG_CREDENTIALS: &str = "The email or password is wrong.";
const INVALID_REFRESH: &str = "The refresh token is not valid: log in again.";
/// At most this many reset mails per account per hour.
const RESET_MAILS_PER_HOUR: i64 = 3;

fn std_to_chrono(duration: std::time::Duration) -> Duration {
    Duration::from_std(duration).unwrap_or(Duration::MAX)
}

/// Creates an account (role `USER`), mails a verification link, and logs it in.
#[tracing::instrument(skip_all)]
pub async fn register(
    app: &AppState,
    name: &str,
    email: &str,
    password: &str,
    client_ip: Option<std::net::IpAddr>,
) -> AppResult<Session> {
    let name = parse_name(name)?;
    let email = Email::parse(email, "email")?;
    check_password_strength(password, "password")?;
    // Beyond the hashing capacity, refuse before counting the attempt against the address.
    app.hasher.admit()?;
    if let Some(ip) = client_ip {
        let policy = throttle::registrations(app.config.auth.registrations_per_hour);
        let keys = [(throttle::registration_key(&ip.to_string()), policy)];
        let mut conn = app.pool.get().await?;
        let now = Utc::now();
        match throttle::check(&mut conn, &keys, now).await? {
            Verdict::Refuse { retry_after } => {
                tracing::warn!(
                    retry_after,
                    "registration refused: too many from this address"
                );
                return Err(AppError::RateLimited {
                    message: format!(
                        "Too many new accounts from this address. Try again in {retry_after} seconds."
                    ),
                    retry_after,
                });
            }
            Verdict::Slow(delay) => tokio::time::sleep(delay).await,
            Verdict::Allow => {}
        }
        // Every attempt counts, successful or not.
        throttle::record_failure(&mut conn, &keys, now).await?;
    }
    let password_hash = app.hasher.hash(password).await?;
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let (user, verify_token, session) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let user = users::insert(
                conn,
                NewUser {
                    id: Uuid::now_v7(),
                    email: email.as_str(),
                    name: &name,
                    password_hash: &password_hash,
                    role: Role::User,
                    email_verified_at: None,
                },
            )
            .await?;
            let token = create_mail_token(
                conn,
                app,
                &user,
                MailPurpose::VerifyEmail,
                user.email.clone(),
                now,
            )
            .await?;
            let session = start_session(conn, app, user.clone(), None, now).await?;
            Ok((user, token, session))
        })
        .await?;
    tracing::info!(user_id = %user.id, email = %email.masked(), "account registered");
    send_verification(app, &user.name, &user.email, &verify_token);
    Ok(session)
}

/// Checks the password and opens a session, with brute-force protection per account and address.
#[tracing::instrument(skip_all, fields(client_ip = ?client_ip))]
pub async fn login(
    app: &AppState,
    email: &str,
    password: &str,
    client_ip: Option<std::net::IpAddr>,
) -> AppResult<Session> {
    let email = Email::parse(email, "email").ok();
    let masked = email
        .as_ref()
        .map_or_else(|| "(not an email)".to_owned(), Email::masked);
    let account_key = email.as_ref().map(|e| throttle::account_key(e.as_str()));
    let mut keys = Vec::new();
    if let Some(key) = &account_key {
        keys.push((key.clone(), throttle::ACCOUNT));
    }
    if let Some(ip) = client_ip {
        keys.push((throttle::address_key(&ip.to_string()), throttle::ADDRESS));
    }
    let now = Utc::now();
    // Beyond the hashing capacity, refuse before touching the database.
    app.hasher.admit()?;

    let user = {
        let mut conn = app.pool.get().await?;
        match throttle::check(&mut conn, &keys, now).await? {
            Verdict::Refuse { retry_after } => {
                tracing::warn!(email = %masked, retry_after, "login refused: too many failed attempts");
                metrics::counter!("auth_login_attempts_total", "outcome" => "throttled")
                    .increment(1);
                return Err(AppError::RateLimited {
                    message: format!("Too many failed logins. Try again in {retry_after} seconds."),
                    retry_after,
                });
            }
            Verdict::Slow(delay) => {
                tracing::info!(email = %masked, delay_ms = delay.as_millis() as u64, "login slowed after failed attempts");
                tokio::time::sleep(delay).await;
            }
            Verdict::Allow => {}
        }
        match &email {
            Some(email) => users::find_by_email(&mut conn, email.as_str()).await?,
            None => None,
        }
        // The connection goes back to the pool before hashing.
    };

    let verified = app
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let mut conn = app.pool.get().await?;
    let user = match (user, verified) {
        (Some(user), true) => user,
        (user, _) => {
            throttle::record_failure(&mut conn, &keys, now).await?;
            tracing::warn!(email = %masked, known_account = user.is_some(), "login failed");
            metrics::counter!("auth_login_attempts_total", "outcome" => "failed").increment(1);
            return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
        }
    };
    if user.status() == UserStatus::Suspended {
        tracing::warn!(user_id = %user.id, "login refused: account suspended");
        metrics::counter!("auth_login_attempts_total", "outcome" => "suspended").increment(1);
        return Err(AppError::Forbidden(
            "This account is suspended. Contact support if you think this is a mistake.".into(),
        ));
    }
    if let Some(key) = &account_key {
        repo::reset_throttle(&mut conn, key).await?;
    }
    let session = start_session(&mut conn, app, user, None, Utc::now()).await?;
    tracing::info!(user_id = %session.user.id, "login succeeded");
    metrics::counter!("auth_login_attempts_total", "outcome" => "succeeded").increment(1);
    Ok(session)
}

/// Rotates a refresh token: the old one is used up, a new one (same family) is returned.
#[tracing::instrument(skip_all)]
pub async fn refresh(app: &AppState, token: &str) -> AppResult<Session> {
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let row = repo::find_refresh_token(&mut conn, &hash_token(token))
        .await?
        .ok_or_else(|| AppError::Unauthenticated(INVALID_REFRESH.into()))?;
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(AppError::Unauthenticated(INVALID_REFRESH.into()));
    }
    let user = users::find_by_id(&mut conn, UserId(row.user_id))
        .await?
        .filter(|u| u.status() == UserStatus::Active)
        .ok_or_else(|| AppError::Unauthenticated(INVALID_REFRESH.into()))?;
    let rotated = conn
        .transaction::<_, AppError, _>(async |conn| {
            if !repo::claim_refresh_token(conn, row.id, now).await? {
                return Ok(None);
            }
            Ok(Some(
                start_session(conn, app, user, Some(row.family_id), now).await?,
            ))
        })
        .await?;
    match rotated {
        Some(session) => Ok(session),
        None => {
            // Already used: someone else holds a copy. End every session of this family.
            let revoked = repo::revoke_family(&mut conn, row.family_id, now).await?;
            tracing::warn!(user_id = %row.user_id, family = %row.family_id, revoked, "refresh token reused; session family revoked");
            Err(AppError::Unauthenticated(
                "This refresh token was already used, so the session was ended for safety. Log in again.".into(),
            ))
        }
    }
}

/// Ends the session the refresh token belongs to. Unknown tokens are ignored (nothing to end).
#[tracing::instrument(skip_all)]
pub async fn logout(app: &AppState, token: &str) -> AppResult<bool> {
    let mut conn = app.pool.get().await?;
    if let Some(row) = repo::find_refresh_token(&mut conn, &hash_token(token)).await? {
        repo::revoke_family(&mut conn, row.family_id, Utc::now()).await?;
        tracing::info!(user_id = %row.user_id, "logged out");
    }
    Ok(true)
}

/// Mails a reset link if the address belongs to an active account. Always answers true, at once.
pub fn request_password_reset(app: &AppState, email: &str) -> bool {
    let Ok(email) = Email::parse(email, "email") else {
        return true;
    };
    let app = app.clone();
    let span = tracing::info_span!("password_reset_request", email = %email.masked());
    tokio::spawn(
        async move {
            if let Err(e) = send_reset(&app, &email).await {
                tracing::error!(error = ?e, "could not send a password reset mail");
            }
        }
        .instrument(span),
    );
    true
}

async fn send_reset(app: &AppState, email: &Email) -> AppResult<()> {
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let Some(user) = users::find_by_email(&mut conn, email.as_str()).await? else {
        tracing::info!("password reset asked for an unknown address; nothing sent");
        return Ok(());
    };
    if user.status() != UserStatus::Active {
        tracing::info!(user_id = %user.id, "password reset asked for a suspended account; nothing sent");
        return Ok(());
    }
    let recent = repo::count_recent_email_tokens(
        &mut conn,
        user.id,
        MailPurpose::ResetPassword,
        now - Duration::hours(1),
    )
    .await?;
    if recent >= RESET_MAILS_PER_HOUR {
        tracing::warn!(user_id = %user.id, "password reset mail limit reached; nothing sent");
        return Ok(());
    }
    let token = create_mail_token(
        &mut conn,
        app,
        &user,
        MailPurpose::ResetPassword,
        user.email.clone(),
        now,
    )
    .await?;
    let hours = app.config.auth.reset_token_ttl.as_secs() / 3600;
    let mail = action_mail(
        &user.email,
        "Reset your Joyfull Hub password",
        &user.name,
        "Someone (hopefully you) asked to reset the password of your Joyfull Hub account.",
        "Choose a new password",
        &format!("{}/reset-password?token={token}", app.mailer.public_url),
        &format!(
            "The link works once, for {hours} hours. If you did not ask for it, ignore this mail: your password stays as it is."
        ),
    );
    app.mailer.send(mail).await.map_err(AppError::internal)?;
    tracing::info!(user_id = %user.id, "password reset mail sent");
    Ok(())
}

/// Sets a new password with a reset token; every session of the account ends.
#[tracing::instrument(skip_all)]
pub async fn reset_password(app: &AppState, token: &str, new_password: &str) -> AppResult<bool> {
    check_password_strength(new_password, "newPassword")?;
    let password_hash = app.hasher.hash(new_password).await?;
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let user_id = conn
        .transaction::<_, AppError, _>(async |conn| {
            let token = repo::consume_email_token(
                conn,
                &hash_token(token),
                &[MailPurpose::ResetPassword],
                now,
            )
            .await?
            .ok_or_else(|| {
                AppError::bad_input(
                    "token",
                    "This reset link is invalid, used or expired: ask for a new one.",
                )
            })?;
            users::update_password(conn, UserId(token.user_id), &password_hash).await?;
            repo::revoke_all_for_user(conn, token.user_id, now).await?;
            repo::retire_email_tokens(conn, token.user_id, MailPurpose::ResetPassword, now).await?;
            // Receiving the mail proves the address.
            users::mark_verified_if_current(conn, token.user_id, &token.email, now).await?;
            audit_account_event(conn, token.user_id, "user.password_reset").await?;
            Ok(token.user_id)
        })
        .await?;
    app.caches.invalidate_user(user_id);
    tracing::info!(user_id = %user_id, "password reset; every session ended");
    Ok(true)
}

/// Confirms an address from a verification (or email change) link.
#[tracing::instrument(skip_all)]
pub async fn verify_email(app: &AppState, token: &str) -> AppResult<bool> {
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let user_id = conn
        .transaction::<_, AppError, _>(async |conn| {
            let token = repo::consume_email_token(
                conn,
                &hash_token(token),
                &[MailPurpose::VerifyEmail, MailPurpose::ChangeEmail],
                now,
            )
            .await?
            .ok_or_else(|| {
                AppError::bad_input(
                    "token",
                    "This verification link is invalid, used or expired.",
                )
            })?;
            if token.purpose == MailPurpose::ChangeEmail {
                users::set_verified_email(conn, token.user_id, &token.email, now).await?;
            } else {
                users::mark_verified_if_current(conn, token.user_id, &token.email, now).await?;
            }
            Ok(token.user_id)
        })
        .await?;
    tracing::info!(user_id = %user_id, "email address verified");
    Ok(true)
}

/// Changes the password after checking the current one; every session of the account ends.
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn change_password(
    app: &AppState,
    user: UserId,
    current: &str,
    new_password: &str,
) -> AppResult<bool> {
    let row = {
        let mut conn = app.pool.get().await?;
        users::find_by_id(&mut conn, user)
            .await?
            .ok_or_else(|| AppError::Unauthenticated("This account no longer exists.".into()))?
    };
    if !app.hasher.verify(current, Some(&row.password_hash)).await? {
        tracing::warn!("password change refused: wrong current password");
        return Err(AppError::bad_input(
            "currentPassword",
            "The current password is wrong.",
        ));
    }
    check_password_strength(new_password, "newPassword")?;
    let password_hash = app.hasher.hash(new_password).await?;
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        users::update_password(conn, user, &password_hash).await?;
        repo::revoke_all_for_user(conn, user.0, now).await?;
        audit_account_event(conn, user.0, "user.password_changed").await?;
        Ok(())
    })
    .await?;
    app.caches.invalidate_user(user.0);
    tracing::info!("password changed; every session ended");
    Ok(true)
}

/// Asks the owner of `new_email` to confirm it; the address changes when they do.
pub async fn request_email_change(
    app: &AppState,
    user: &UserRow,
    new_email: &Email,
) -> AppResult<()> {
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    if users::email_taken(&mut conn, new_email.as_str()).await? {
        return Err(AppError::Conflict(
            "That email address is already registered.".into(),
        ));
    }
    let token = create_mail_token(
        &mut conn,
        app,
        user,
        MailPurpose::ChangeEmail,
        new_email.as_str().to_owned(),
        now,
    )
    .await?;
    tracing::info!(user_id = %user.id, new_email = %new_email.masked(), "email change requested");
    send_verification(app, &user.name, new_email.as_str(), &token);
    Ok(())
}

/// Mails a new verification link for the current, unverified address.
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn resend_verification(app: &AppState, user: UserId) -> AppResult<bool> {
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let row = users::find_by_id(&mut conn, user)
        .await?
        .ok_or_else(|| AppError::Unauthenticated("This account no longer exists.".into()))?;
    if row.email_verified_at.is_some() {
        return Err(AppError::Conflict(
            "Your email address is already verified.".into(),
        ));
    }
    let recent = repo::count_recent_email_tokens(
        &mut conn,
        row.id,
        MailPurpose::VerifyEmail,
        now - Duration::hours(1),
    )
    .await?;
    if recent >= RESET_MAILS_PER_HOUR {
        return Err(AppError::RateLimited {
            message: "Several verification mails went out in the last hour: check your inbox (and spam folder).".into(),
            retry_after: 3600,
        });
    }
    let token = create_mail_token(
        &mut conn,
        app,
        &row,
        MailPurpose::VerifyEmail,
        row.email.clone(),
        now,
    )
    .await?;
    send_verification(app, &row.name, &row.email, &token);
    Ok(true)
}

/// Issues an access token and a refresh token (a new family unless `family` continues one).
async fn start_session(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: UserRow,
    family: Option<Uuid>,
    now: DateTime<Utc>,
) -> AppResult<Session> {
    let (refresh_token, hash) = random_token(REFRESH_PREFIX);
    repo::insert_refresh_token(
        conn,
        NewRefreshToken {
            id: Uuid::now_v7(),
            user_id: user.id,
            family_id: family.unwrap_or_else(Uuid::now_v7),
            token_hash: &hash,
            expires_at: now + std_to_chrono(app.config.auth.refresh_token_ttl),
        },
    )
    .await?;
    let (access_token, access_token_expires_at) = issue_access_token(
        &app.keys,
        user.id(),
        user.role(),
        user.session_version,
        now,
        app.config.auth.access_token_ttl,
    )?;
    Ok(Session {
        access_token,
        access_token_expires_at,
        refresh_token,
        user,
    })
}

async fn create_mail_token(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: &UserRow,
    purpose: MailPurpose,
    email: String,
    now: DateTime<Utc>,
) -> AppResult<String> {
    let ttl = match purpose {
        MailPurpose::ResetPassword => app.config.auth.reset_token_ttl,
        MailPurpose::VerifyEmail | MailPurpose::ChangeEmail => app.config.auth.verify_token_ttl,
    };
    let (token, hash) = random_token("");
    repo::insert_email_token(
        conn,
        NewEmailToken {
            id: Uuid::now_v7(),
            user_id: user.id,
            purpose,
            email: &email,
            token_hash: &hash,
            expires_at: now + std_to_chrono(ttl),
        },
    )
    .await?;
    Ok(token)
}

/// Sends the verification mail in the background; a failure is logged, and the user can ask for
/// another with `resendVerificationEmail`.
fn send_verification(app: &AppState, name: &str, to: &str, token: &str) {
    let hours = app.config.auth.verify_token_ttl.as_secs() / 3600;
    let mail = action_mail(
        to,
        "Confirm your email address for Joyfull Hub",
        name,
        "Please confirm that this address belongs to you.",
        "Confirm my address",
        &format!("{}/verify-email?token={token}", app.mailer.public_url),
        &format!(
            "The link works once, for {hours} hours. If you did not sign up, ignore this mail."
        ),
    );
    let mailer = app.mailer.clone();
    tokio::spawn(
        async move {
            if let Err(e) = mailer.send(mail).await {
                tracing::error!(error = ?e, "could not send a verification mail");
            }
        }
        .instrument(tracing::Span::current()),
    );
}

/// Records a security-relevant event of an account, done by its owner, in the audit trail.
async fn audit_account_event(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    action: &str,
) -> diesel::QueryResult<()> {
    crate::audit::service::record_in(
        conn,
        &crate::audit::service::Actor {
            user_id: Some(user),
            request_id: None,
        },
        crate::audit::service::Event {
            action,
            target_type: "user",
            target_id: Some(user.to_string()),
            before: None,
            after: None,
        },
    )
    .await
}

/// Forgets a user's sessions and mail tokens inside the caller's transaction (the account is being
/// deleted).
pub async fn forget_user_in(conn: &mut AsyncPgConnection, user: UserId) -> diesel::QueryResult<()> {
    repo::delete_tokens_of_user(conn, user.0).await
}
