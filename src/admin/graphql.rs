use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::stats::{self, PlatformStats};
use crate::audit::graphql::AuditEntry;
use crate::billing::model::PlanTier;
use crate::error::AppError;
use crate::graphql::context::ContextExt;
use crate::graphql::guards::AdminOnly;
use crate::graphql::{cursor, ids};
use crate::tools::graphql::ConnectionTotal;
use crate::users::graphql::User;
use crate::users::model::{ListFilter, ListSort, Listed, Role, UserId, UserStatus};
use crate::users::service;

/// How `admin.users` is ordered.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    /// Newest first.
    #[default]
    CreatedAt,
    /// A to Z, ignoring case.
    Name,
    /// Most tokens used this period first.
    TokensUsed,
}

impl From<UserSort> for ListSort {
    fn from(sort: UserSort) -> Self {
        match sort {
            UserSort::CreatedAt => Self::CreatedAt,
            UserSort::Name => Self::Name,
            UserSort::TokensUsed => Self::TokensUsed,
        }
    }
}

fn encode_listed(listed: &Listed) -> String {
    cursor::encode_text(&format!(
        "{}|{}|{}|{}",
        listed.id,
        listed.created_at.timestamp_micros(),
        listed.tokens_key,
        listed.name_key
    ))
}

fn decode_listed(cursor: &str) -> Result<Listed, AppError> {
    let invalid = || AppError::bad_input("after", "That cursor is not one this API gave out.");
    let text = cursor::decode_text(cursor)?;
    let mut parts = text.splitn(4, '|');
    let id = Uuid::parse_str(parts.next().ok_or_else(invalid)?).map_err(|_| invalid())?;
    let micros: i64 = parts
        .next()
        .ok_or_else(invalid)?
        .parse()
        .map_err(|_| invalid())?;
    let tokens_key: i64 = parts
        .next()
        .ok_or_else(invalid)?
        .parse()
        .map_err(|_| invalid())?;
    let name_key = parts.next().ok_or_else(invalid)?.to_owned();
    Ok(Listed {
        id,
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
        name_key,
        tokens_key,
    })
}

/// The admin console's root field.
#[derive(Default)]
pub struct AdminRootQuery;

#[Object]
impl AdminRootQuery {
    /// Everything administrators see (administrators only).
    #[graphql(guard = "AdminOnly")]
    async fn admin(&self) -> AdminQuery {
        AdminQuery
    }
}

/// What administrators see.
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Accounts, filtered and sorted, with their subscription and usage this period (one batch per page).
    #[graphql(
        guard = "AdminOnly",
        complexity = "crate::graphql::cost::page(first, child_complexity)"
    )]
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is a filter of the contract"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
        role: Option<Role>,
        status: Option<UserStatus>,
        tier: Option<PlanTier>,
        sort: Option<UserSort>,
    ) -> async_graphql::Result<Connection<String, User, ConnectionTotal>> {
        let first = cursor::page_size(first)?;
        let after = after.as_deref().map(decode_listed).transpose()?;
        let filter = ListFilter {
            search: search
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            role,
            status,
            tier,
        };
        let page = service::admin_list(
            ctx.app()?,
            &filter,
            sort.unwrap_or_default().into(),
            after.as_ref(),
            first,
        )
        .await?;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            page.has_next,
            ConnectionTotal {
                total_count: page.total.into(),
            },
        );
        for (row, listed) in page.users {
            connection
                .edges
                .push(Edge::new(encode_listed(&listed), User::from(row)));
        }
        Ok(connection)
    }

    /// One account, with its API keys (never secrets), recent usage and subscription history.
    #[graphql(guard = "AdminOnly")]
    async fn user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<User>> {
        let id = ids::parse(&id, "id")?;
        match service::get(ctx.app()?, UserId(id)).await {
            Ok(row) if row.deleted_at.is_none() => Ok(Some(row.into())),
            Ok(_) | Err(AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Platform statistics for whole days in `[from, to)` (a range ending mid-day includes that day).
    #[graphql(guard = "AdminOnly")]
    async fn stats(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<PlatformStats> {
        Ok(stats::compute(ctx.app()?, from, to).await?)
    }

    /// The audit trail, newest first, optionally by action, actor or target.
    #[graphql(
        guard = "AdminOnly",
        complexity = "crate::graphql::cost::page(first, child_complexity)"
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        action: Option<String>,
        actor_id: Option<ID>,
        target_id: Option<String>,
    ) -> async_graphql::Result<Connection<String, AuditEntry>> {
        let first = cursor::page_size(first)?;
        let after = after.as_deref().map(cursor::decode_time_id).transpose()?;
        let actor = match actor_id {
            Some(id) => Some(
                Uuid::parse_str(&id)
                    .map_err(|_| AppError::bad_input("actorId", "That is not a user id."))?,
            ),
            None => None,
        };
        let filter = crate::audit::model::Filter {
            action,
            actor,
            target_id,
        };
        let (rows, has_next) =
            crate::audit::service::page(ctx.app()?, &filter, after, first).await?;
        Ok(cursor::newest_first(
            rows,
            after.is_some(),
            has_next,
            |row| (row.created_at, row.id),
        ))
    }

    /// The mail log, newest first: every message queued, whether it was sent, is waiting for a retry
    /// (`PENDING`, with its next attempt) or was given up (`FAILED`, with the last error).
    #[graphql(
        guard = "AdminOnly",
        complexity = "crate::graphql::cost::page(first, child_complexity)"
    )]
    async fn mail_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<crate::mail::model::MailStatus>,
    ) -> async_graphql::Result<Connection<String, crate::mail::graphql::MailDelivery>> {
        let first = cursor::page_size(first)?;
        let after = after.as_deref().map(cursor::decode_time_id).transpose()?;
        let (rows, has_next) = crate::mail::outbox::page(ctx.app()?, status, after, first).await?;
        Ok(cursor::newest_first(
            rows,
            after.is_some(),
            has_next,
            |row| (row.created_at, row.id),
        ))
    }
}

/// A new account made by an administrator.
#[derive(InputObject)]
pub struct CreateUserInput {
    pub name: String,
    pub email: String,
    #[graphql(secret)]
    pub password: String,
    #[graphql(default_with = "Role::User")]
    pub role: Role,
}

/// Changes to an account; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateUserInput {
    pub name: Option<String>,
    pub role: Option<Role>,
    /// `SUSPENDED` stops the account's tokens and API keys on their next request.
    pub status: Option<UserStatus>,
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Creates an account (administrators). Its address counts as verified.
    #[graphql(guard = "AdminOnly")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> async_graphql::Result<User> {
        let row = service::admin_create(
            ctx.app()?,
            &ctx.actor()?,
            &input.name,
            &input.email,
            &input.password,
            input.role,
        )
        .await?;
        Ok(row.into())
    }

    /// Renames an account, changes its role, suspends or reactivates it (administrators). The last
    /// active administrator cannot be demoted or suspended.
    #[graphql(guard = "AdminOnly")]
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateUserInput,
    ) -> async_graphql::Result<User> {
        let id = ids::parse(&id, "id")?;
        let row = service::admin_update(
            ctx.app()?,
            &ctx.actor()?,
            UserId(id),
            input.name.as_deref(),
            input.role,
            input.status,
        )
        .await?;
        Ok(row.into())
    }

    /// Revokes any user's API key (administrators); requests using it are refused from now on.
    #[graphql(guard = "AdminOnly")]
    async fn revoke_user_api_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<crate::keys::graphql::ApiKey> {
        let id = ids::parse(&id, "id")?;
        Ok(
            crate::keys::service::admin_revoke(ctx.app()?, &ctx.actor()?, id)
                .await?
                .into(),
        )
    }

    /// Deletes an account (administrators): its personal data and credentials go; its usage stays in the
    /// platform statistics without the person. The last active administrator cannot be deleted.
    #[graphql(guard = "AdminOnly")]
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let id = ids::parse(&id, "id")?;
        service::admin_delete(ctx.app()?, &ctx.actor()?, UserId(id)).await?;
        Ok(true)
    }
}
