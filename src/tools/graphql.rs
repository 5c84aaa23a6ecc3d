use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::catalogue::{self, Page};
use super::input::{HeaderInput, ToolInput};
use super::model::{ToolId, ToolRow};
use super::rendered::{self, Keep, PageKey, Rendered};
use super::repo::Listing;
use super::service;
use crate::auth::identity::Caller;
use crate::billing::model::PlanTier;
use crate::error::AppError;
use crate::graphql::big_int::BigInt;
use crate::graphql::context::ContextExt;
use crate::graphql::guards::AdminOnly;
use crate::graphql::{cursor, ids};
use crate::users::model::Role;

/// An AI tool of the catalogue.
#[derive(SimpleObject)]
pub struct Tool {
    pub id: ID,
    pub name: String,
    /// Unique, URL-friendly name.
    pub slug: String,
    pub description: String,
    /// How to call it: what `input` it expects and what it answers.
    pub usage: String,
    pub category: String,
    /// The lowest plan tier that may invoke it.
    pub min_tier: PlanTier,
    pub enabled: bool,
    /// Tokens reserved per call before the actual count is known, when the call states no maximum.
    pub estimated_tokens: BigInt,
    /// The most a call that states its own maximum (`max_tokens` or `max_completion_tokens` in its
    /// input) reserves: that maximum plus its input, capped at this.
    pub max_tokens_per_call: BigInt,
    /// Whether the upstream streams its answers (Server-Sent Events): the hub asks it to, with the
    /// token usage in its last chunk, and `invokeTool` answers the collected stream.
    pub streams: bool,
    pub created_at: DateTime<Utc>,
    /// The upstream URL (administrators only).
    #[graphql(guard = "AdminOnly")]
    pub endpoint: String,
    /// The HTTP method used upstream (administrators only).
    #[graphql(guard = "AdminOnly")]
    pub method: String,
    /// Extra headers sent upstream; secret values are never shown (administrators only).
    #[graphql(guard = "AdminOnly")]
    pub headers: Vec<ToolHeader>,
    /// Upstream timeout in milliseconds (administrators only).
    #[graphql(guard = "AdminOnly")]
    pub timeout_ms: i32,
    /// Where the token count is in the upstream's answer (administrators only).
    #[graphql(guard = "AdminOnly")]
    pub tokens_path: String,
}

/// An extra upstream header.
#[derive(SimpleObject)]
pub struct ToolHeader {
    pub name: String,
    /// Null for secret headers: they are encrypted at rest and never shown back.
    pub value: Option<String>,
    pub secret: bool,
}

impl TryFrom<ToolRow> for Tool {
    type Error = AppError;

    fn try_from(row: ToolRow) -> Result<Self, AppError> {
        let headers = row
            .stored_headers()
            .into_iter()
            .map(|h| ToolHeader {
                secret: h.is_secret(),
                value: h.value,
                name: h.name,
            })
            .collect();
        Ok(Self {
            id: ID(row.id.to_string()),
            min_tier: row.min_tier,
            name: row.name,
            slug: row.slug,
            description: row.description,
            usage: row.usage_notes,
            category: row.category,
            enabled: row.enabled,
            estimated_tokens: row.estimated_tokens.into(),
            max_tokens_per_call: row.max_tokens_per_call.into(),
            streams: row.streams,
            created_at: row.created_at,
            endpoint: row.endpoint,
            method: row.method,
            headers,
            timeout_ms: row.timeout_ms,
            tokens_path: row.tokens_path,
        })
    }
}

/// The total behind a connection.
#[derive(SimpleObject)]
pub struct ConnectionTotal {
    /// How many items match, over all pages.
    pub total_count: BigInt,
}

/// A page of tools (Relay connection).
pub type ToolConnection = Connection<String, Tool, ConnectionTotal>;

/// An extra header to send upstream.
#[derive(InputObject)]
pub struct ToolHeaderInput {
    pub name: String,
    /// For a secret header already stored under this name, omit to keep it.
    pub value: Option<String>,
    /// Encrypt at rest and never show back (API keys of the AI provider).
    #[graphql(default)]
    pub secret: bool,
}

/// A new tool, or changes to one (omitted fields stay as they are).
#[derive(InputObject)]
#[graphql(name = "ToolInput")]
pub struct ToolInputFields {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    /// Usage notes shown to users.
    pub usage: Option<String>,
    pub category: Option<String>,
    /// http(s) URL of the upstream.
    pub endpoint: Option<String>,
    /// GET, POST (default), PUT or PATCH.
    pub method: Option<String>,
    /// Replaces the list of extra headers.
    pub headers: Option<Vec<ToolHeaderInput>>,
    pub timeout_ms: Option<i32>,
    /// Dot path to the token count in the answer (default usage.total_tokens).
    pub tokens_path: Option<String>,
    pub estimated_tokens: Option<BigInt>,
    /// See `Tool.maxTokensPerCall` (default 100000).
    pub max_tokens_per_call: Option<BigInt>,
    pub min_tier: Option<PlanTier>,
    pub enabled: Option<bool>,
    /// See `Tool.streams` (default false).
    pub streams: Option<bool>,
}

impl From<ToolInputFields> for ToolInput {
    fn from(input: ToolInputFields) -> Self {
        Self {
            name: input.name,
            slug: input.slug,
            description: input.description,
            usage_notes: input.usage,
            category: input.category,
            endpoint: input.endpoint,
            method: input.method,
            headers: input.headers.map(|headers| {
                headers
                    .into_iter()
                    .map(|h| HeaderInput {
                        name: h.name,
                        value: h.value,
                        secret: h.secret,
                    })
                    .collect()
            }),
            timeout_ms: input.timeout_ms,
            tokens_path: input.tokens_path,
            estimated_tokens: input.estimated_tokens.map(i64::from),
            max_tokens_per_call: input.max_tokens_per_call.map(i64::from),
            min_tier: input.min_tier,
            enabled: input.enabled,
            streams: input.streams,
        }
    }
}

fn is_admin(ctx: &Context<'_>) -> Result<bool, AppError> {
    Ok(matches!(&ctx.request()?.caller, Caller::User(u) if u.role == Role::Admin))
}

/// A tool id argument (see `graphql::ids`).
pub fn parse_id(id: &ID, argument: &str) -> Result<ToolId, AppError> {
    ids::parse(id, argument).map(ToolId)
}

fn encode_cursor(row: &ToolRow) -> String {
    cursor::encode_text(&format!("{}\u{1f}{}", row.name, row.id))
}

fn decode_cursor(cursor: &str) -> Result<(String, Uuid), AppError> {
    let invalid = || AppError::bad_input("after", "That cursor is not one this API gave out.");
    let text = cursor::decode_text(cursor)?;
    let (name, id) = text.split_once('\u{1f}').ok_or_else(invalid)?;
    Ok((name.to_owned(), Uuid::parse_str(id).map_err(|_| invalid())?))
}

/// The connection of a page read with one tool more than `first`, which tells whether a next page exists.
fn connection_of(page: Page, first: i32, resumes: bool) -> Result<ToolConnection, AppError> {
    let Page {
        mut rows, total, ..
    } = page;
    let has_next = rows.len() > first as usize;
    rows.truncate(first as usize);
    let mut connection = Connection::with_additional_fields(
        resumes,
        has_next,
        ConnectionTotal {
            // Not selected when absent, so never shown.
            total_count: total.unwrap_or_default().into(),
        },
    );
    for row in rows {
        let cursor = encode_cursor(&row);
        connection
            .edges
            .push(Edge::new(cursor, Tool::try_from(row)?));
    }
    Ok(connection)
}

/// Largest page a client may ask for.
pub const MAX_PAGE: i32 = 100;

#[derive(Default)]
pub struct ToolsQuery;

#[Object]
impl ToolsQuery {
    /// The catalogue, by name. Users see enabled tools; administrators see all. `search` matches the name
    /// or description. Pages hold `first` tools (default 20, at most 100) after the cursor `after`.
    #[graphql(complexity = "crate::graphql::cost::page(first, child_complexity)")]
    async fn tools(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> async_graphql::Result<Rendered<ToolConnection>> {
        let first = first.unwrap_or(20);
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("Ask for 0 to {MAX_PAGE} tools at a time."),
            )
            .into());
        }
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let search = search.as_deref().map(str::trim).filter(|s| !s.is_empty());
        if search.is_some_and(|s| s.chars().count() > 100) {
            return Err(AppError::bad_input("search", "Search for at most 100 characters.").into());
        }
        let include_disabled = is_admin(ctx)?;
        let listing = Listing {
            include_disabled,
            search,
        };
        let app = ctx.app()?;
        let snapshot = catalogue::snapshot(app).await?;
        let keep = snapshot.as_ref().and_then(|snapshot| {
            let key = PageKey {
                include_disabled,
                search: search.map(str::to_owned),
                after: after.clone(),
                first,
                selection: rendered::selection_key(&ctx.field())?,
            };
            Some(Keep::new(&app.rendered_pages, snapshot, key))
        });
        if let Some(page) = keep.as_ref().and_then(Keep::kept) {
            return Ok(Rendered::Kept(page));
        }
        // The count is only made when asked for (it costs a query when the page comes from the database).
        let want_total = ctx.look_ahead().field("totalCount").exists();
        let resumes = after.is_some();
        let page = catalogue::page(
            app,
            snapshot.as_deref().map(Vec::as_slice),
            &listing,
            after,
            i64::from(first) + 1,
            want_total,
        )
        .await?;
        let keep = keep.filter(|_| page.from_snapshot);
        Ok(Rendered::Resolve {
            value: connection_of(page, first, resumes)?,
            keep,
        })
    }

    /// One tool; null when there is none (or, for users, when it is disabled).
    async fn tool(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Tool>> {
        let id = ids::parse(&id, "id")?;
        let row = service::get(ctx.app()?, ToolId(id), is_admin(ctx)?).await?;
        Ok(row
            .map(Arc::unwrap_or_clone)
            .map(Tool::try_from)
            .transpose()?)
    }
}

#[derive(Default)]
pub struct ToolsMutation;

#[Object]
impl ToolsMutation {
    /// Adds a tool to the catalogue (administrators). `name` and `endpoint` are required.
    #[graphql(guard = "AdminOnly")]
    async fn create_tool(
        &self,
        ctx: &Context<'_>,
        input: ToolInputFields,
    ) -> async_graphql::Result<Tool> {
        let row = service::create(ctx.app()?, &ctx.actor()?, input.into()).await?;
        Ok(row.try_into()?)
    }

    /// Changes a tool (administrators); the next invocation uses the change.
    #[graphql(guard = "AdminOnly")]
    async fn update_tool(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ToolInputFields,
    ) -> async_graphql::Result<Tool> {
        let id = parse_id(&id, "id")?;
        let row = service::update(ctx.app()?, &ctx.actor()?, id, input.into()).await?;
        Ok(row.try_into()?)
    }

    /// Removes a tool from the catalogue (administrators). Its usage history stays.
    #[graphql(guard = "AdminOnly")]
    async fn delete_tool(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let id = parse_id(&id, "id")?;
        service::delete(ctx.app()?, &ctx.actor()?, id).await?;
        Ok(true)
    }
}
