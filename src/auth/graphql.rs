use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::email_change;
use super::mail_links;
use super::service;
use super::sessions::Session;
use crate::graphql::context::ContextExt;
use crate::graphql::guards::Scoped;
use crate::keys::model::Scope;
use crate::users::graphql::User;

/// A session: a short-lived access token and the refresh token that renews it.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    /// Trade it for a new pair with `refreshToken` before `accessTokenExpiresAt`. Each one works once.
    pub refresh_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub user: User,
}

impl From<Session> for AuthPayload {
    fn from(session: Session) -> Self {
        Self {
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            access_token_expires_at: session.access_token_expires_at,
            user: session.user.into(),
        }
    }
}

/// A new account.
#[derive(InputObject)]
pub struct RegisterInput {
    pub name: String,
    pub email: String,
    /// At least 8 characters with upper and lower case, a digit and a special character.
    #[graphql(secret)]
    pub password: String,
}

/// Credentials to log in with.
#[derive(InputObject)]
pub struct LoginInput {
    pub email: String,
    #[graphql(secret)]
    pub password: String,
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Creates an account, mails a link to confirm the address, and logs in.
    async fn register(
        &self,
        ctx: &Context<'_>,
        input: RegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        let client_ip = ctx.request()?.client_ip;
        let session = service::register(
            ctx.app()?,
            &input.name,
            &input.email,
            &input.password,
            client_ip,
        )
        .await?;
        Ok(session.into())
    }

    /// Logs in. A wrong password and an unknown address get the same answer; repeated failures are
    /// slowed, then refused with `RATE_LIMITED`.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let session =
            service::login(ctx.app()?, &input.email, &input.password, &ctx.origin()?).await?;
        Ok(session.into())
    }

    /// Trades a refresh token for a new session. Each refresh token works once; presenting a used one
    /// ends the whole session.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        Ok(service::refresh(ctx.app()?, &refresh_token, &ctx.origin()?)
            .await?
            .into())
    }

    /// Ends the session the refresh token belongs to.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] refresh_token: String,
    ) -> async_graphql::Result<bool> {
        Ok(service::logout(ctx.app()?, &refresh_token, &ctx.origin()?).await?)
    }

    /// Mails a password reset link if the address has an account. Answers true either way.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<bool> {
        let client_ip = ctx.request()?.client_ip;
        Ok(mail_links::request_password_reset(ctx.app()?, &email, client_ip).await?)
    }

    /// Sets a new password with the token from a reset mail. Every session of the account ends.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
        #[graphql(secret)] new_password: String,
    ) -> async_graphql::Result<bool> {
        Ok(mail_links::reset_password(ctx.app()?, &token, &new_password, &ctx.origin()?).await?)
    }

    /// Confirms an email address with the token from a verification mail.
    async fn verify_email(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> async_graphql::Result<bool> {
        Ok(mail_links::verify_email(ctx.app()?, &token).await?)
    }

    /// Cancels an email change with the token from the notice mailed to the previous address. A change
    /// already confirmed is undone and every session of the account ends.
    async fn cancel_email_change(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> async_graphql::Result<bool> {
        Ok(email_change::cancel_email_change(ctx.app()?, &token, &ctx.origin()?).await?)
    }

    /// Mails a new verification link for the caller's unconfirmed address.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn resend_verification_email(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let user = ctx.user()?;
        let client_ip = ctx.request()?.client_ip;
        Ok(mail_links::resend_verification(ctx.app()?, user.id, client_ip).await?)
    }
}
