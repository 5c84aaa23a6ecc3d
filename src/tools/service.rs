//! Catalogue rules: administration (checked by `input`, audited in the same transaction), listing, and
//! the headers for an upstream call.

use std::sync::Arc;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::crypto;
use super::input::{
    ToolInput, bad, check_endpoint, check_estimate, check_max_tokens_per_call, check_method,
    check_slug, check_text, check_timeout, check_tokens_path, slugify, store_headers,
};
use super::model::{NewTool, ToolChanges, ToolId, ToolRow};
use super::repo;
use crate::app::AppState;
use crate::audit::service::{self as audit, Actor};
use crate::billing::model::PlanTier;
use crate::error::{AppError, AppResult};

/// A tool's `max_tokens_per_call` unless its administrator sets one.
pub const DEFAULT_MAX_TOKENS_PER_CALL: i64 = 100_000;

/// Creates a tool (administrators).
#[tracing::instrument(skip_all)]
pub async fn create(app: &AppState, actor: &Actor, input: ToolInput) -> AppResult<ToolRow> {
    let name = check_text("name", input.name.as_deref().unwrap_or_default(), 100, true)?;
    let slug = check_slug(&input.slug.unwrap_or_else(|| slugify(&name)))?;
    let endpoint = check_endpoint(
        input
            .endpoint
            .as_deref()
            .ok_or_else(|| bad("endpoint", "An endpoint is required."))?,
        app.config.gateway.allow_private_upstreams,
    )?;
    let tool = NewTool {
        id: Uuid::now_v7(),
        slug,
        name,
        description: check_text(
            "description",
            input.description.as_deref().unwrap_or_default(),
            2000,
            false,
        )?,
        usage_notes: check_text(
            "usage",
            input.usage_notes.as_deref().unwrap_or_default(),
            5000,
            false,
        )?,
        category: check_text(
            "category",
            input.category.as_deref().unwrap_or("general"),
            60,
            true,
        )?,
        endpoint,
        method: check_method(input.method.as_deref().unwrap_or("POST"))?,
        headers: store_headers(app, input.headers.unwrap_or_default(), &[])?,
        timeout_ms: check_timeout(input.timeout_ms.unwrap_or(30_000))?,
        tokens_path: check_tokens_path(
            input.tokens_path.as_deref().unwrap_or("usage.total_tokens"),
        )?,
        estimated_tokens: check_estimate(input.estimated_tokens.unwrap_or(1000))?,
        max_tokens_per_call: check_max_tokens_per_call(
            input
                .max_tokens_per_call
                .unwrap_or(DEFAULT_MAX_TOKENS_PER_CALL),
        )?,
        min_tier: input.min_tier.unwrap_or(PlanTier::Free),
        enabled: input.enabled.unwrap_or(true),
        streams: input.streams.unwrap_or(false),
    };
    let mut conn = app.pool.get().await?;
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            let row = repo::insert(conn, &tool).await.map_err(slug_conflict)?;
            audit_in(conn, actor, "tool.create", row.id, None, Some(&row)).await?;
            Ok(row)
        })
        .await?;
    tracing::info!(tool_id = %row.id, slug = %row.slug, "tool created");
    Ok(row)
}

/// What the audit trail keeps of a tool: never header values.
fn audit_view(row: &ToolRow) -> serde_json::Value {
    serde_json::json!({
        "name": row.name,
        "slug": row.slug,
        "endpoint": row.endpoint,
        "method": row.method,
        "headers": row.stored_headers().iter().map(|h| h.name.clone()).collect::<Vec<_>>(),
        "timeoutMs": row.timeout_ms,
        "tokensPath": row.tokens_path,
        "estimatedTokens": row.estimated_tokens,
        "maxTokensPerCall": row.max_tokens_per_call,
        "minTier": row.min_tier,
        "enabled": row.enabled,
        "streams": row.streams,
    })
}

/// Appends an administrator's change to a tool to the audit trail, in the change's transaction.
async fn audit_in(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    action: &str,
    id: Uuid,
    before: Option<&ToolRow>,
    after: Option<&ToolRow>,
) -> diesel::QueryResult<()> {
    let (before, after) = match (before.map(audit_view), after.map(audit_view)) {
        (Some(b), Some(a)) => {
            let (b, a) = audit::diff(&b, &a);
            (Some(b), Some(a))
        }
        other => other,
    };
    audit::record_in(
        conn,
        actor,
        audit::Event {
            action,
            target_type: "tool",
            target_id: Some(id.to_string()),
            before,
            after,
        },
    )
    .await
}

fn slug_conflict(error: diesel::result::Error) -> AppError {
    match error {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => AppError::Conflict("Another tool already uses that slug.".into()),
        other => other.into(),
    }
}

/// Changes a tool (administrators); the next request sees the change.
#[tracing::instrument(skip_all, fields(tool_id = %id))]
pub async fn update(
    app: &AppState,
    actor: &Actor,
    ToolId(id): ToolId,
    input: ToolInput,
) -> AppResult<ToolRow> {
    let mut conn = app.pool.get().await?;
    let existing = repo::find(&mut conn, id).await?.ok_or_else(not_found)?;
    let changes = ToolChanges {
        name: input
            .name
            .as_deref()
            .map(|n| check_text("name", n, 100, true))
            .transpose()?,
        slug: input.slug.as_deref().map(check_slug).transpose()?,
        description: input
            .description
            .as_deref()
            .map(|d| check_text("description", d, 2000, false))
            .transpose()?,
        usage_notes: input
            .usage_notes
            .as_deref()
            .map(|u| check_text("usage", u, 5000, false))
            .transpose()?,
        category: input
            .category
            .as_deref()
            .map(|c| check_text("category", c, 60, true))
            .transpose()?,
        endpoint: input
            .endpoint
            .as_deref()
            .map(|e| check_endpoint(e, app.config.gateway.allow_private_upstreams))
            .transpose()?,
        method: input.method.as_deref().map(check_method).transpose()?,
        headers: input
            .headers
            .map(|h| store_headers(app, h, &existing.stored_headers()))
            .transpose()?,
        timeout_ms: input.timeout_ms.map(check_timeout).transpose()?,
        tokens_path: input
            .tokens_path
            .as_deref()
            .map(check_tokens_path)
            .transpose()?,
        estimated_tokens: input.estimated_tokens.map(check_estimate).transpose()?,
        max_tokens_per_call: input
            .max_tokens_per_call
            .map(check_max_tokens_per_call)
            .transpose()?,
        min_tier: input.min_tier,
        enabled: input.enabled,
        streams: input.streams,
    };
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            let before = repo::lock(conn, id).await?.ok_or_else(not_found)?;
            let row = repo::update(conn, id, &changes)
                .await
                .map_err(slug_conflict)?
                .ok_or_else(not_found)?;
            audit_in(conn, actor, "tool.update", id, Some(&before), Some(&row)).await?;
            Ok(row)
        })
        .await?;
    app.caches.invalidate_tool(id);
    tracing::info!("tool updated");
    Ok(row)
}

/// Deletes a tool from the catalogue; its usage history stays.
#[tracing::instrument(skip_all, fields(tool_id = %id))]
pub async fn delete(app: &AppState, actor: &Actor, ToolId(id): ToolId) -> AppResult<()> {
    let now = app.clock.now();
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let before = repo::lock(conn, id).await?.ok_or_else(not_found)?;
        if repo::soft_delete(conn, id, now).await? == 0 {
            return Err(not_found());
        }
        audit_in(conn, actor, "tool.delete", id, Some(&before), None).await?;
        Ok(())
    })
    .await?;
    app.caches.invalidate_tool(id);
    tracing::info!("tool deleted");
    Ok(())
}

pub fn not_found() -> AppError {
    AppError::NotFound("There is no tool with that id.".into())
}

/// A tool the caller may see: users only see enabled tools.
/// Served from this instance's cache when it has the tool (`crate::cache`).
pub async fn get(
    app: &AppState,
    ToolId(id): ToolId,
    include_disabled: bool,
) -> AppResult<Option<Arc<ToolRow>>> {
    let tool = app
        .caches
        .tools
        .get_or_load(id, async {
            let mut conn = app.pool.get().await?;
            Ok::<_, AppError>(repo::find(&mut conn, id).await?.map(Arc::new))
        })
        .await?;
    Ok(tool.filter(|t| include_disabled || t.enabled))
}

/// Tools by id, deleted and disabled ones included (usage history refers to them).
pub async fn get_many_with_deleted(app: &AppState, ids: &[Uuid]) -> AppResult<Vec<ToolRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::find_many_with_deleted(&mut conn, ids).await?)
}

/// The headers to send upstream, secrets decrypted.
pub fn upstream_headers(app: &AppState, tool: &ToolRow) -> AppResult<Vec<(String, String)>> {
    tool.stored_headers()
        .into_iter()
        .map(
            |header| match (&header.value, &header.nonce, &header.ciphertext) {
                (Some(value), _, _) => Ok((header.name.clone(), value.clone())),
                (None, Some(nonce), Some(ciphertext)) => {
                    let value = crypto::decrypt(
                        app.keys.encryption_key.expose(),
                        &header.name,
                        nonce,
                        ciphertext,
                    )?;
                    Ok((header.name.clone(), value))
                }
                _ => Err(AppError::internal(anyhow::anyhow!(
                    "tool {} has a header without a value",
                    tool.id
                ))),
            },
        )
        .collect()
}

/// Creates the tool unless its slug exists (seeding).
pub async fn seed(app: &AppState, tool: &NewTool) -> AppResult<bool> {
    let mut conn = app.pool.get().await?;
    Ok(repo::insert_if_absent(&mut conn, tool).await? == 1)
}
