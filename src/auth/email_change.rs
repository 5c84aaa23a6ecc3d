//! Changing the login address: asked with the current password, confirmed by the new address, and
//! cancellable from the old one (a change already confirmed is undone and every session ends).

use chrono::Utc;
use diesel_async::AsyncConnection;

use super::mail_links::{
    create_mail_token, queue_in, spend_mail_budget, verification_mail, within_hourly_limit,
};
use super::model::MailPurpose;
use super::repo;
use super::tokens::hash_token;
use crate::app::AppState;
use crate::audit::service::Actor;
use crate::error::{AppError, AppResult};
use crate::mail::transport::{OutgoingMail, action_mail};
use crate::users::model::{Email, UserId, UserRow};
use crate::users::repo as users;

/// The new address gets a confirmation link; the current one a notice with a link that cancels the
/// change. Needs the current password: a stolen session alone cannot move the account's login.
pub async fn request_email_change(
    app: &AppState,
    user: &UserRow,
    new_email: &Email,
    current_password: Option<&str>,
    origin: &Actor,
) -> AppResult<()> {
    let Some(current_password) = current_password else {
        return Err(AppError::bad_input(
            "currentPassword",
            "Confirm an email change with your current password.",
        ));
    };
    if !app
        .hasher
        .verify(current_password, Some(&user.password_hash))
        .await?
    {
        tracing::warn!(user_id = %user.id, "email change refused: wrong current password");
        return Err(AppError::bad_input(
            "currentPassword",
            "The current password is wrong.",
        ));
    }
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    if users::email_taken(&mut conn, new_email.as_str()).await? {
        return Err(AppError::Conflict(
            "That email address is already registered.".into(),
        ));
    }
    if !within_hourly_limit(&mut conn, user.id, MailPurpose::ChangeEmail, now).await? {
        return Err(AppError::RateLimited {
            message: "Several email changes were asked for in the last hour: try again later."
                .into(),
            retry_after: 3600,
        });
    }
    spend_mail_budget(app, origin.client_ip).await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let confirm = create_mail_token(
            conn,
            app,
            user,
            MailPurpose::ChangeEmail,
            new_email.as_str().to_owned(),
            now,
        )
        .await?;
        let cancel = create_mail_token(
            conn,
            app,
            user,
            MailPurpose::CancelEmailChange,
            user.email.clone(),
            now,
        )
        .await?;
        crate::audit::service::record_account_event_in(
            conn,
            user.id,
            "user.email_change_requested",
            origin,
        )
        .await?;
        let confirmation = verification_mail(app, &user.name, new_email.as_str(), &confirm);
        queue_in(conn, app, user.id, MailPurpose::ChangeEmail, &confirmation).await?;
        let notice = change_notice(app, user, new_email, &cancel);
        queue_in(conn, app, user.id, MailPurpose::CancelEmailChange, &notice).await?;
        Ok(())
    })
    .await?;
    app.mailer.wake();
    tracing::info!(user_id = %user.id, new_email = %new_email.masked(), "email change requested");
    Ok(())
}

/// Tells the current address that a change to `new_email` was asked for, with the link that undoes it.
fn change_notice(app: &AppState, user: &UserRow, new_email: &Email, token: &str) -> OutgoingMail {
    action_mail(
        &user.email,
        "Your Joyfull Hub email address is being changed",
        &user.name,
        &format!(
            "Someone signed in to your account asked to change its email address to {}.",
            new_email.masked()
        ),
        "If this was not you, cancel the change (this also signs out every session)",
        &format!(
            "{}/cancel-email-change?token={token}",
            app.mailer.public_url
        ),
        "If it was you, there is nothing to do. Then consider changing your password.",
    )
}

/// Cancels an email change from the link mailed to the old address: pending confirmations stop
/// working, and a change already confirmed is undone (the old address is back) with every session
/// ended, so whoever asked for it is signed out.
#[tracing::instrument(skip_all)]
pub async fn cancel_email_change(app: &AppState, token: &str, origin: &Actor) -> AppResult<bool> {
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let user_id = conn
        .transaction::<_, AppError, _>(async |conn| {
            let token = repo::consume_email_token(
                conn,
                &hash_token(token),
                &[MailPurpose::CancelEmailChange],
                now,
            )
            .await?
            .ok_or_else(|| {
                AppError::bad_input("token", "This link is invalid, used or expired.")
            })?;
            repo::retire_email_tokens(conn, token.user_id, MailPurpose::ChangeEmail, now).await?;
            let current = users::find_by_id(conn, UserId(token.user_id))
                .await?
                .ok_or_else(|| AppError::NotFound("This account no longer exists.".into()))?;
            if current.email != token.email {
                if users::email_taken(conn, &token.email).await? {
                    return Err(AppError::Conflict(
                        "The previous address now belongs to another account; contact support."
                            .into(),
                    ));
                }
                users::restore_email(conn, token.user_id, &token.email, now).await?;
                repo::revoke_all_for_user(conn, token.user_id, now).await?;
            }
            crate::audit::service::record_account_event_in(
                conn,
                token.user_id,
                "user.email_change_cancelled",
                origin,
            )
            .await?;
            Ok(token.user_id)
        })
        .await?;
    app.caches.invalidate_user(user_id);
    tracing::info!(user_id = %user_id, "email change cancelled from the old address");
    Ok(true)
}
