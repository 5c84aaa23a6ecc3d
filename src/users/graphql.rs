use async_graphql::{ComplexObject, Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{Role, UserId, UserProfile, UserRow, UserStatus};
use super::service;
use crate::auth::identity::Caller;
use crate::billing::graphql::PlanSubscription;
use crate::error::AppError;
use crate::graphql::context::ContextExt;
use crate::graphql::guards::{Scoped, SessionOnly};
use crate::keys::graphql::ApiKey;
use crate::keys::model::Scope;

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
        UserProfile::from(&row).into()
    }
}

impl From<UserProfile> for User {
    fn from(profile: UserProfile) -> Self {
        Self {
            id: ID(profile.id.0.to_string()),
            role: profile.role,
            status: profile.status,
            email_verified: profile.email_verified,
            row_id: profile.id.0,
            name: profile.name,
            email: profile.email,
            created_at: profile.created_at,
        }
    }
}

/// A change of a subscription.
#[derive(SimpleObject)]
pub struct SubscriptionEvent {
    /// CREATED, UPGRADED, DOWNGRADE_SCHEDULED, DOWNGRADE_CANCELLED, CANCELLED, RESUMED, RENEWED or EXPIRED.
    pub kind: String,
    pub from_tier: Option<String>,
    pub to_tier: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// A user's details are for that user (with the read scope) and for administrators (with the admin
/// scope).
fn own_or_admin(ctx: &Context<'_>, user: uuid::Uuid) -> async_graphql::Result<()> {
    let caller = ctx.user()?;
    if caller.id.0 == user {
        caller.require(Scope::Read)?;
    } else if caller.role == Role::Admin {
        caller.require(Scope::Admin)?;
    } else {
        return Err(
            AppError::Forbidden("You can only see your own account's details.".into()).into(),
        );
    }
    Ok(())
}

#[ComplexObject]
impl User {
    /// The user's latest invocations, newest first (at most 100). Visible to the user and to administrators.
    #[graphql(complexity = "crate::graphql::cost::page(Some(first), child_complexity)")]
    async fn recent_usage(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> async_graphql::Result<Vec<crate::usage::graphql::UsageEntry>> {
        own_or_admin(ctx, self.row_id)?;
        if !(0..=100).contains(&first) {
            return Err(AppError::bad_input("first", "Ask for 0 to 100 entries at a time.").into());
        }
        let first = i64::from(first);
        let filter = crate::usage::model::Filter {
            user: self.row_id,
            from: None,
            to: None,
            tool: None,
            api_key: None,
        };
        let (rows, _) = crate::usage::service::page(ctx.app()?, &filter, None, first).await?;
        Ok(rows
            .iter()
            .map(crate::usage::graphql::UsageEntry::from)
            .collect())
    }

    /// Every change of the user's subscriptions, oldest first. Visible to the user and to administrators.
    async fn subscription_history(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<SubscriptionEvent>> {
        own_or_admin(ctx, self.row_id)?;
        let events =
            crate::billing::service::history_for_user(ctx.app()?, UserId(self.row_id)).await?;
        Ok(events
            .into_iter()
            .map(|e| SubscriptionEvent {
                kind: e.kind.to_string(),
                from_tier: e.from_tier.map(|t| t.to_string()),
                to_tier: e.to_tier.map(|t| t.to_string()),
                occurred_at: e.occurred_at,
            })
            .collect())
    }

    /// The user's current subscription; null without one. Visible to the user and to administrators.
    async fn subscription(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<PlanSubscription>> {
        own_or_admin(ctx, self.row_id)?;
        let loaders = ctx.data::<crate::graphql::loaders::Loaders>()?;
        let view = loaders
            .subscriptions(ctx.app()?)
            .load_one(self.row_id)
            .await
            .map_err(|e| async_graphql::Error::new(e.as_str()))?;
        Ok(view.map(PlanSubscription::from))
    }

    /// The user's API keys, newest first. Visible to the user and to administrators.
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        own_or_admin(ctx, self.row_id)?;
        let rows =
            crate::keys::service::list(ctx.app()?, super::model::UserId(self.row_id)).await?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }
}

/// Changes to the caller's profile; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    pub name: Option<String>,
    /// A new login address: it takes effect once confirmed through the link mailed to it; the current
    /// address is told, with a link that cancels the change.
    pub email: Option<String>,
    /// Required with `email`.
    #[graphql(secret)]
    pub current_password: Option<String>,
}

#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The caller's account; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        match &ctx.request()?.caller {
            Caller::Anonymous => Ok(None),
            Caller::User(user) => {
                user.require(Scope::Read)?;
                Ok(Some(service::profile(ctx.app()?, user.id).await?.into()))
            }
        }
    }
}

#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Renames the caller, or starts an email change (confirmed by mail; needs a signed-in session).
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateProfileInput,
    ) -> async_graphql::Result<User> {
        let user = ctx.user()?;
        if input.email.is_some() {
            user.require_session("Changing the email address")?;
        }
        let row = service::update_profile(
            ctx.app()?,
            user.id,
            input.name.as_deref(),
            input.email.as_deref(),
            input.current_password.as_deref(),
            &ctx.origin()?,
        )
        .await?;
        Ok(row.into())
    }

    /// Changes the caller's password (needs a signed-in session). Every session ends: log in again
    /// with the new password.
    #[graphql(guard = "SessionOnly(\"Changing the password\")")]
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
            &ctx.origin()?,
        )
        .await?)
    }
}
