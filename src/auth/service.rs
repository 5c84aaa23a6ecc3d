//! The rules of signing up, logging in and staying logged in.
//!
//! - Access tokens are short-lived JWTs; refresh tokens are opaque, stored hashed, and rotate on every
//!   use. A used refresh token presented again means it was stolen: the whole family is revoked.
//! - Password hashing never holds a database connection, so a login storm cannot drain the pool.
//! - Links sent by mail (verification, password reset) are in `mail_links`, email changes in
//!   `email_change`, what a session is and how it ends in `sessions`.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use uuid::Uuid;

use super::mail_links::{create_mail_token, queue_in, verification_mail};
use super::model::MailPurpose;
use super::repo;
use super::sessions::{Session, end_session, session_ends_at, start_session};
use super::throttle::{self, Verdict};
use super::tokens::hash_token;
use crate::app::AppState;
use crate::audit::service::Actor;
use crate::error::{AppError, AppResult};
use crate::notifications::model::EventType;
use crate::notifications::record::record_in;
use crate::users::model::{
    Email, NewUser, Role, UserId, UserStatus, check_password_strength, parse_name,
};
use crate::users::repo as users;

const WRONG_CREDENTIALS: &str = "The email or password is wrong.";
const INVALID_REFRESH: &str = "The refresh token is not valid: log in again.";

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
        // Every attempt counts, successful or not.
        let policy = throttle::registrations(app.config.auth.registrations_per_hour);
        let keys = [(throttle::registration_key(ip), policy)];
        let mut conn = app.pool.get().await?;
        let verdict = throttle::attempt(&mut conn, &keys, Utc::now()).await?;
        drop(conn);
        if let Verdict::Refuse { retry_after, .. } = verdict {
            tracing::warn!(
                retry_after,
                "registration refused: too many from this address"
            );
        }
        throttle::enforce(verdict, "new accounts from this address").await?;
    }
    let password_hash = app.hasher.hash(password).await?;
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let (user, session) = conn
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
            let mail = verification_mail(app, &user.name, &user.email, &token);
            queue_in(conn, app, user.id, MailPurpose::VerifyEmail, &mail).await?;
            let session = start_session(conn, app, user.clone(), None, now).await?;
            Ok((user, session))
        })
        .await?;
    tracing::info!(user_id = %user.id, email = %email.masked(), "account registered");
    app.mailer.wake();
    Ok(session)
}

/// Checks the password and opens a session, with brute-force protection per account and address.
#[tracing::instrument(skip_all, fields(client_ip = ?origin.client_ip))]
pub async fn login(
    app: &AppState,
    email: &str,
    password: &str,
    origin: &Actor,
) -> AppResult<Session> {
    let client_ip = origin.client_ip;
    let email = Email::parse(email, "email").ok();
    let masked = email
        .as_ref()
        .map_or_else(|| "(not an email)".to_owned(), Email::masked);
    // Counted before they are judged (see `throttle`): per account from this address, per address,
    // and per account from anywhere (which only slows).
    let mut keys = Vec::new();
    let mut forget_on_success = Vec::new();
    let mut uncount_on_success = Vec::new();
    if let Some(email) = &email {
        let account = throttle::account_key(email.as_str());
        keys.push((account.clone(), throttle::ACCOUNT));
        forget_on_success.push(account);
        if let Some(ip) = client_ip {
            let pair = throttle::account_from_address_key(email.as_str(), ip);
            keys.push((pair.clone(), throttle::ACCOUNT_FROM_ADDRESS));
            forget_on_success.push(pair);
        }
    }
    if let Some(ip) = client_ip {
        let address = throttle::address_key(ip);
        keys.push((address.clone(), throttle::ADDRESS));
        uncount_on_success.push(address);
    }
    let now = Utc::now();
    // Beyond the hashing capacity, refuse before touching the database.
    app.hasher.admit()?;
    let started = std::time::Instant::now();

    let verdict = {
        let mut conn = app.pool.get().await?;
        throttle::attempt(&mut conn, &keys, now).await?
    };
    match verdict {
        Verdict::Refuse { retry_after, first } => {
            tracing::warn!(email = %masked, retry_after, "login refused: too many failed attempts");
            metrics::counter!("auth_login_attempts_total", "outcome" => "throttled").increment(1);
            if first && let Some(email) = &email {
                record_throttled(app, email, origin).await?;
            }
        }
        Verdict::Slow(_) | Verdict::Allow => {}
    }
    // Refused attempts end here. A slowed one is answered late only if it fails: a guesser waits, the
    // owner typing the right password does not.
    let failure_delay = match verdict {
        Verdict::Refuse { .. } => {
            throttle::enforce(verdict, "failed logins").await?;
            None
        }
        Verdict::Slow(delay) => Some(delay),
        Verdict::Allow => None,
    };
    let counted = started.elapsed();
    let user = {
        let mut conn = app.pool.get().await?;
        match &email {
            Some(email) => users::find_by_email(&mut conn, email.as_str()).await?,
            None => None,
        }
        // The connection goes back to the pool before hashing.
    };
    let looked_up = started.elapsed();

    let (verified, hash_timing) = app
        .hasher
        .verify_timed(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let checked = started.elapsed();
    let user = match (user, verified) {
        (Some(user), true) => user,
        (user, _) => {
            tracing::warn!(email = %masked, known_account = user.is_some(), "login failed");
            metrics::counter!("auth_login_attempts_total", "outcome" => "failed").increment(1);
            if let Some(delay) = failure_delay {
                tokio::time::sleep(delay).await;
            }
            return Err(AppError::Unauthenticated(WRONG_CREDENTIALS.into()));
        }
    };
    let mut conn = app.pool.get().await?;
    if user.status() == UserStatus::Suspended {
        tracing::warn!(user_id = %user.id, "login refused: account suspended");
        metrics::counter!("auth_login_attempts_total", "outcome" => "suspended").increment(1);
        return Err(AppError::Forbidden(
            "This account is suspended. Contact support if you think this is a mistake.".into(),
        ));
    }
    throttle::succeeded(&mut conn, &forget_on_success, &uncount_on_success).await?;
    let session = conn
        .transaction::<_, AppError, _>(async |conn| {
            let session = start_session(conn, app, user, None, Utc::now()).await?;
            let user = session.user.id;
            if crate::audit::service::is_new_login_address_in(conn, user, origin).await? {
                let payload = json!({
                    "clientIp": origin.client_ip.map(|ip| ip.to_string()),
                    "userAgent": origin.user_agent,
                });
                record_in(conn, EventType::NewLoginAddress, Some(user), payload).await?;
            }
            crate::audit::service::record_account_event_in(conn, user, "user.login", origin)
                .await?;
            Ok(session)
        })
        .await?;
    // Where the time went, so a slow login shows which step waited.
    let millis = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    tracing::info!(
        user_id = %session.user.id,
        attempt_counted_ms = millis(counted),
        account_read_ms = millis(looked_up.saturating_sub(counted)),
        hash_queued_ms = millis(hash_timing.queued),
        hash_ms = millis(hash_timing.hashed),
        session_written_ms = millis(started.elapsed().saturating_sub(checked)),
        "login succeeded"
    );
    metrics::counter!("auth_login_attempts_total", "outcome" => "succeeded").increment(1);
    Ok(session)
}

/// Records, for a known account, that failed logins were just cut off (once per window and counter).
async fn record_throttled(app: &AppState, email: &Email, origin: &Actor) -> AppResult<()> {
    let mut conn = app.pool.get().await?;
    if let Some(user) = users::find_by_email(&mut conn, email.as_str()).await? {
        crate::audit::service::record_account_event_in(
            &mut conn,
            user.id,
            "user.login_throttled",
            origin,
        )
        .await?;
    }
    Ok(())
}

/// Rotates a refresh token: the old one is used up, a new one (same family) is returned.
#[tracing::instrument(skip_all)]
pub async fn refresh(app: &AppState, token: &str, origin: &Actor) -> AppResult<Session> {
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let row = repo::find_refresh_token(&mut conn, &hash_token(token))
        .await?
        .ok_or_else(|| AppError::Unauthenticated(INVALID_REFRESH.into()))?;
    if row.revoked_at.is_none() && session_ends_at(app, row.family_id) <= now {
        repo::revoke_family(&mut conn, row.family_id, now).await?;
        return Err(AppError::Unauthenticated(
            "This session reached its maximum age: log in again.".into(),
        ));
    }
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
            let revoked = end_session(app, &mut conn, row.family_id, row.user_id).await?;
            crate::audit::service::record_account_event_in(
                &mut conn,
                row.user_id,
                "user.refresh_token_reused",
                origin,
            )
            .await?;
            tracing::warn!(user_id = %row.user_id, family = %row.family_id, revoked, "refresh token reused; session family revoked");
            Err(AppError::Unauthenticated(
                "This refresh token was already used, so the session was ended for safety. Log in again.".into(),
            ))
        }
    }
}

/// Ends the session the refresh token belongs to. Unknown tokens are ignored (nothing to end).
#[tracing::instrument(skip_all)]
pub async fn logout(app: &AppState, token: &str, origin: &Actor) -> AppResult<bool> {
    let mut conn = app.pool.get().await?;
    if let Some(row) = repo::find_refresh_token(&mut conn, &hash_token(token)).await? {
        end_session(app, &mut conn, row.family_id, row.user_id).await?;
        crate::audit::service::record_account_event_in(
            &mut conn,
            row.user_id,
            "user.logout",
            origin,
        )
        .await?;
        tracing::info!(user_id = %row.user_id, "logged out");
    }
    Ok(true)
}

/// Changes the password after checking the current one; every session of the account ends.
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn change_password(
    app: &AppState,
    user: UserId,
    current: &str,
    new_password: &str,
    origin: &Actor,
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
        repo::retire_email_tokens(conn, user.0, MailPurpose::ChangeEmail, now).await?;
        crate::audit::service::record_account_event_in(
            conn,
            user.0,
            "user.password_changed",
            origin,
        )
        .await?;
        let payload = json!({ "clientIp": origin.client_ip.map(|ip| ip.to_string()) });
        record_in(conn, EventType::PasswordChanged, Some(user.0), payload).await?;
        Ok(())
    })
    .await?;
    app.caches.invalidate_user(user.0);
    tracing::info!("password changed; every session ended");
    Ok(true)
}

/// Forgets a user's sessions and mail tokens inside the caller's transaction (the account is being
/// deleted).
pub async fn forget_user_in(conn: &mut AsyncPgConnection, user: UserId) -> diesel::QueryResult<()> {
    repo::delete_ended_sessions_of(conn, user.0).await?;
    repo::delete_tokens_of_user(conn, user.0).await
}
