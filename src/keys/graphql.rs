use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{ApiKeyRow, Scope};
use super::service;
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
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        Self {
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
}

#[derive(Default)]
pub struct KeysQuery;

#[Object]
impl KeysQuery {
    /// The caller's API keys, newest first.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let user = ctx.user()?;
        let rows = service::list(ctx.app()?, user.id).await?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }
}

#[derive(Default)]
pub struct KeysMutation;

#[Object]
impl KeysMutation {
    /// Creates an API key for scripts. The secret is in the answer, and nowhere else, ever.
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
            &ctx.origin()?,
        )
        .await?;
        Ok(CreatedApiKey {
            key: created.secret,
            api_key: created.row.into(),
        })
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
