use async_graphql::{ComplexObject, Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{Role, UserRow, UserStatus};
use super::service;
use crate::billing::graphql::PlanSubscription;
use crate::error::AppError;
use crate::graphql::context::{Caller, ContextExt};
use crate::graphql::guards::LoggedIn;
use crate::keys::graphql::ApiKey;

/// A person with an account.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
    pub name: String,
    /// The confirmed login address (a requested change shows here once confirmed).
    pub email: String,
    pub role: Role,
    pub status: UserStatus,
    /// Whether the owner confirmed `email` through the mailed link.
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub row_id: uuid::Uuid,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            role: row.role(),
            status: row.status(),
            email_verified: row.email_verified_at.is_some(),
            row_id: row.id,
            name: row.name,
            email: row.email,
            created_at: row.created_at,
        }
    }
}

#[ComplexObject]
impl User {
    /// The user's current subscription; null without one. Visible to the user and to administrators.
    async fn subscription(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<PlanSubscription>> {
        let caller = ctx.user()?;
        if caller.id.0 != self.row_id && caller.role != Role::Admin {
            return Err(
                AppError::Forbidden("You can only see your own subscription.".into()).into(),
            );
        }
        let view =
            crate::billing::service::current(ctx.app()?, super::model::UserId(self.row_id)).await?;
        Ok(view.map(PlanSubscription::try_from).transpose()?)
    }

    /// The user's API keys, newest first. Visible to the user and to administrators.
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let caller = ctx.user()?;
        if caller.id.0 != self.row_id && caller.role != Role::Admin {
            return Err(AppError::Forbidden("You can only see your own API keys.".into()).into());
        }
        let rows =
            crate::keys::service::list(ctx.app()?, super::model::UserId(self.row_id)).await?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }
}

/// Changes to the caller's profile; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    pub name: Option<String>,
    /// A new login address: it takes effect once confirmed through the link mailed to it.
    pub email: Option<String>,
}

#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The caller's account; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        match &ctx.request()?.caller {
            Caller::Anonymous => Ok(None),
            Caller::User(user) => Ok(Some(service::get(ctx.app()?, user.id).await?.into())),
        }
    }
}

#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Renames the caller, or starts an email change (confirmed by mail).
    #[graphql(guard = "LoggedIn")]
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateProfileInput,
    ) -> async_graphql::Result<User> {
        let user = ctx.user()?;
        let row = service::update_profile(
            ctx.app()?,
            user.id,
            input.name.as_deref(),
            input.email.as_deref(),
        )
        .await?;
        Ok(row.into())
    }

    /// Changes the caller's password. Every session ends: log in again with the new password.
    #[graphql(guard = "LoggedIn")]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] current_password: String,
        #[graphql(secret)] new_password: String,
    ) -> async_graphql::Result<bool> {
        let user = ctx.user()?;
        Ok(crate::auth::service::change_password(
            ctx.app()?,
            user.id,
            &current_password,
            &new_password,
        )
        .await?)
    }
}
