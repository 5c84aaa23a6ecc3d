//! Links sent by mail: email verification and password resets, and what every mail flow shares (limits,
//! tokens, sending). Email changes are in `email_change`.
//!
//! Mail tokens are single-use, hashed and time-limited. Asking for a reset answers the same whether or
//! not the address exists, and does the work in the background so timing says nothing either.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::Instrument;
use uuid::Uuid;

use super::model::{MailPurpose, NewEmailToken};
use super::repo;
use super::throttle;
use super::tokens::{hash_token, random_token};
use crate::app::AppState;
use crate::audit::service::Actor;
use crate::error::{AppError, AppResult};
use crate::mail::outbox;
use crate::mail::transport::{OutgoingMail, action_mail};
use crate::notifications::model::EventType;
use crate::notifications::record::record_in;
use crate::users::model::{Email, UserId, UserRow, UserStatus, check_password_strength};
use crate::users::repo as users;

/// How long the old address may cancel an email change.
const CANCEL_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// At most this many mails of one purpose per account per hour.
const MAILS_PER_HOUR: i64 = 3;

/// Whether another mail of `purpose` may go to the user now.
pub(super) async fn within_hourly_limit(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    purpose: MailPurpose,
    now: DateTime<Utc>,
) -> diesel::QueryResult<bool> {
    let recent =
        repo::count_recent_email_tokens(conn, user, purpose, now - Duration::hours(1)).await?;
    Ok(recent < MAILS_PER_HOUR)
}

/// Mails a reset link if the address belongs to an active account. Always answers true, at once.
pub async fn request_password_reset(
    app: &AppState,
    email: &str,
    client_ip: Option<IpAddr>,
) -> AppResult<bool> {
    spend_mail_budget(app, client_ip).await?;
    let Ok(email) = Email::parse(email, "email") else {
        return Ok(true);
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
    Ok(true)
}

/// Counts a mail asked for from `client_ip` against that address's hourly budget (whatever the
/// account, so one place cannot mail without limit).
pub(super) async fn spend_mail_budget(app: &AppState, client_ip: Option<IpAddr>) -> AppResult<()> {
    let Some(ip) = client_ip else {
        return Ok(());
    };
    let keys = [(throttle::mail_key(ip), throttle::MAILS_FROM_ADDRESS)];
    let verdict = {
        let mut conn = app.pool.get().await?;
        throttle::attempt(&mut conn, &keys, Utc::now()).await?
    };
    throttle::enforce(verdict, "mails asked for from this address").await
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
    if !within_hourly_limit(&mut conn, user.id, MailPurpose::ResetPassword, now).await? {
        tracing::warn!(user_id = %user.id, "password reset mail limit reached; nothing sent");
        return Ok(());
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        let token = create_mail_token(
            conn,
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
        queue_in(conn, app, user.id, MailPurpose::ResetPassword, &mail).await
    })
    .await?;
    app.mailer.wake();
    tracing::info!(user_id = %user.id, "password reset mail queued");
    Ok(())
}

/// Sets a new password with a reset token; every session of the account ends.
#[tracing::instrument(skip_all)]
pub async fn reset_password(
    app: &AppState,
    token: &str,
    new_password: &str,
    origin: &Actor,
) -> AppResult<bool> {
    check_password_strength(new_password, "newPassword")?;
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    // The token is checked before the (costly) hash, so guessing tokens costs the server nothing;
    // it is consumed below, atomically.
    if !repo::email_token_usable(
        &mut conn,
        &hash_token(token),
        MailPurpose::ResetPassword,
        now,
    )
    .await?
    {
        return Err(AppError::bad_input(
            "token",
            "This reset link is invalid, used or expired: ask for a new one.",
        ));
    }
    drop(conn);
    let password_hash = app.hasher.hash(new_password).await?;
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
            repo::retire_email_tokens(conn, token.user_id, MailPurpose::ChangeEmail, now).await?;
            // Receiving the mail proves the address.
            users::mark_verified_if_current(conn, token.user_id, &token.email, now).await?;
            crate::audit::service::record_account_event_in(
                conn,
                token.user_id,
                "user.password_reset",
                origin,
            )
            .await?;
            let payload =
                serde_json::json!({ "clientIp": origin.client_ip.map(|ip| ip.to_string()) });
            record_in(conn, EventType::PasswordReset, Some(token.user_id), payload).await?;
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
                let payload = serde_json::json!({ "newEmail": token.email });
                record_in(conn, EventType::EmailChanged, Some(token.user_id), payload).await?;
            } else {
                users::mark_verified_if_current(conn, token.user_id, &token.email, now).await?;
            }
            Ok(token.user_id)
        })
        .await?;
    // This instance at once; the others through the users table's invalidation trigger.
    app.caches.invalidate_user(user_id);
    tracing::info!(user_id = %user_id, "email address verified");
    Ok(true)
}

/// Mails a new verification link for the current, unverified address.
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn resend_verification(
    app: &AppState,
    user: UserId,
    client_ip: Option<IpAddr>,
) -> AppResult<bool> {
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
    if !within_hourly_limit(&mut conn, row.id, MailPurpose::VerifyEmail, now).await? {
        return Err(AppError::RateLimited {
            message: "Several verification mails went out in the last hour: check your inbox (and spam folder).".into(),
            retry_after: 3600,
        });
    }
    spend_mail_budget(app, client_ip).await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let token = create_mail_token(
            conn,
            app,
            &row,
            MailPurpose::VerifyEmail,
            row.email.clone(),
            now,
        )
        .await?;
        let mail = verification_mail(app, &row.name, &row.email, &token);
        queue_in(conn, app, row.id, MailPurpose::VerifyEmail, &mail).await
    })
    .await?;
    app.mailer.wake();
    Ok(true)
}

pub(super) async fn create_mail_token(
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
        MailPurpose::CancelEmailChange => CANCEL_LINK_TTL,
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
            expires_at: crate::clock::after(now, ttl),
        },
    )
    .await?;
    Ok(token)
}

/// Queues `mail` to `user` about `purpose` in the caller's transaction (wake the mailer after the
/// commit): it goes out even if the server stops right after.
pub(super) async fn queue_in(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: Uuid,
    purpose: MailPurpose,
    mail: &OutgoingMail,
) -> AppResult<()> {
    outbox::enqueue_in(conn, app, Some(user), purpose.as_db(), mail).await?;
    Ok(())
}

/// The mail that confirms `to` with the verification `token`.
pub(super) fn verification_mail(app: &AppState, name: &str, to: &str, token: &str) -> OutgoingMail {
    let hours = app.config.auth.verify_token_ttl.as_secs() / 3600;
    action_mail(
        to,
        "Confirm your email address for Joyfull Hub",
        name,
        "Please confirm that this address belongs to you.",
        "Confirm my address",
        &format!("{}/verify-email?token={token}", app.mailer.public_url),
        &format!(
            "The link works once, for {hours} hours. If you did not sign up, ignore this mail."
        ),
    )
}
