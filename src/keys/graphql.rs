use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{ApiKeyRow, KeyLimits, Scope};
use super::service;
use crate::graphql::big_int::BigInt;
use crate::graphql::context::ContextExt;
use crate::graphql::guards::Scoped;

/// An API key, as listed: never the secret.
#[derive(SimpleObject)]
pub struct ApiKey {
    pub id: ID,
    /// The name its owner gave it.
    pub name: String,
    /// The first characters of the key (`jhk_1a2b3c4d`), to recognise it.
    pub prefix: String,
    /// Neither revoked nor expired.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working; null for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Its own request rate (calls per minute), narrowing the plan's; null for the plan's alone.
    pub requests_per_minute: Option<i32>,
    /// The most tokens it may spend in a billing period; null for the plan's limit alone.
    pub token_budget: Option<BigInt>,
    /// Tokens its calls were charged in the current billing period.
    pub tokens_used_this_period: BigInt,
}

impl ApiKey {
    fn with_spending(row: ApiKeyRow, spent: &std::collections::HashMap<uuid::Uuid, i64>) -> Self {
        let used = spent.get(&row.id).copied().unwrap_or(0);
        Self {
            tokens_used_this_period: used.into(),
            ..Self::from(row)
        }
    }
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            requests_per_minute: row.requests_per_minute,
            token_budget: row.token_budget.map(BigInt::from),
            tokens_used_this_period: 0.into(),
            id: ID(row.id.to_string()),
            active: row.active_at(Utc::now()),
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            scopes: row.scopes.clone(),
        }
    }
}

/// A key just created.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The secret (`jhk_…`). It is shown this once: store it now.
    pub key: String,
    pub api_key: ApiKey,
}

/// A new API key.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// A name to recognise it by, e.g. "CI pipeline".
    pub name: String,
    /// When it should stop working; omit for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it may do; omit for INVOKE and READ. A key creating a key can only give scopes it has;
    /// ADMIN takes an administrator's signed-in session.
    pub scopes: Option<Vec<Scope>>,
    /// Its own request rate, narrowing the plan's (see `setApiKeyLimits`).
    pub requests_per_minute: Option<i32>,
    /// Its own token budget per billing period (see `setApiKeyLimits`).
    pub token_budget: Option<BigInt>,
}

/// A key's own limits. Both the key's and the plan's apply, so a key's can only narrow the plan's; null
/// leaves that dimension to the plan.
#[derive(InputObject)]
pub struct ApiKeyLimitsInput {
    /// Calls per minute (paced like plans: a burst of ceil(r / 6), then one every 60 / r s).
    pub requests_per_minute: Option<i32>,
    /// Tokens per billing period of the key's owner.
    pub token_budget: Option<BigInt>,
}

#[derive(Default)]
pub struct KeysQuery;

#[Object]
impl KeysQuery {
    /// The caller's API keys, newest first.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let user = ctx.user()?;
        let app = ctx.app()?;
        let rows = service::list(app, user.id).await?;
        let spent = crate::billing::key_spending::this_period(app, user.id).await?;
        Ok(rows
            .into_iter()
            .map(|row| ApiKey::with_spending(row, &spent))
            .collect())
    }
}

#[derive(Default)]
pub struct KeysMutation;

#[Object]
impl KeysMutation {
    /// Creates an API key for scripts. The secret is in the answer, and nowhere else, ever. A key with
    /// limits of its own cannot create keys (`FORBIDDEN`).
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreatedApiKey> {
        let user = ctx.user()?;
        let created = service::create(
            ctx.app()?,
            user,
            &input.name,
            input.expires_at,
            input.scopes,
            KeyLimits {
                requests_per_minute: input.requests_per_minute,
                token_budget: input.token_budget.map(i64::from),
            },
            &ctx.origin()?,
        )
        .await?;
        Ok(CreatedApiKey {
            key: created.secret,
            api_key: created.row.into(),
        })
    }

    /// Sets one of the caller's API keys' own limits (replacing both); takes a signed-in session, so a
    /// key cannot lift its own. Errors: `NOT_FOUND`, `FORBIDDEN`, `BAD_USER_INPUT` naming the field.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn set_api_key_limits(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ApiKeyLimitsInput,
    ) -> async_graphql::Result<ApiKey> {
        let user = ctx.user()?;
        let id = crate::graphql::ids::parse(&id, "id")?;
        let app = ctx.app()?;
        let limits = KeyLimits {
            requests_per_minute: input.requests_per_minute,
            token_budget: input.token_budget.map(i64::from),
        };
        let row = service::set_limits(app, user, id, limits, &ctx.origin()?).await?;
        let spent = crate::billing::key_spending::this_period(app, user.id).await?;
        Ok(ApiKey::with_spending(row, &spent))
    }

    /// Revokes one of the caller's API keys; requests using it are refused from now on.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let user = ctx.user()?;
        let id = crate::graphql::ids::parse(&id, "id")?;
        Ok(service::revoke(ctx.app()?, user.id, id, &ctx.origin()?)
            .await?
            .into())
    }
}
