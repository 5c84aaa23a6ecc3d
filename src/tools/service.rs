//! Catalogue rules: validation, administration, listing, and the headers for an upstream call.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::crypto;
use super::model::{NewTool, StoredHeader, ToolChanges, ToolId, ToolRow};
use super::repo::{self, Listing};
use crate::app::AppState;
use crate::audit::service::{self as audit, Actor};
use crate::billing::model::PlanTier;
use crate::error::{AppError, AppResult};

/// A tool as an administrator writes it; `None` means "unchanged" on update, "default" on create.
#[derive(Debug, Default, Clone)]
pub struct ToolInput {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub usage_notes: Option<String>,
    pub category: Option<String>,
    pub endpoint: Option<String>,
    pub method: Option<String>,
    /// Replaces the whole list when given.
    pub headers: Option<Vec<HeaderInput>>,
    pub timeout_ms: Option<i32>,
    pub tokens_path: Option<String>,
    pub estimated_tokens: Option<i64>,
    pub min_tier: Option<PlanTier>,
    pub enabled: Option<bool>,
}

/// One extra header sent upstream.
#[derive(Debug, Clone)]
pub struct HeaderInput {
    pub name: String,
    /// For a secret header, `None` keeps the value already stored under this name.
    pub value: Option<String>,
    /// Encrypted at rest and never shown back.
    pub secret: bool,
}

/// Headers a tool may not set: the hub owns them.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "content-type",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "x-request-id",
];

fn bad(field: &str, message: &str) -> AppError {
    AppError::bad_input(field, message)
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> AppResult<String> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(bad(field, "This field cannot be empty."));
    }
    if value.chars().count() > max {
        return Err(bad(field, &format!("At most {max} characters.")));
    }
    Ok(value.to_owned())
}

fn check_slug(slug: &str) -> AppResult<String> {
    let slug = slug.trim().to_owned();
    let valid = (1..=60).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if valid {
        Ok(slug)
    } else {
        Err(bad(
            "slug",
            "A slug has 1 to 60 lower-case letters, digits and inner hyphens, e.g. text-summarizer.",
        ))
    }
}

/// A slug from a name: "Text Summarizer!" → "text-summarizer".
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-')
        .chars()
        .take(60)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

fn check_endpoint(endpoint: &str) -> AppResult<String> {
    let endpoint = endpoint.trim();
    let url = reqwest::Url::parse(endpoint).map_err(|_| {
        bad(
            "endpoint",
            "The endpoint must be a full URL such as https://api.example.com/v1/run.",
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(
            "endpoint",
            "Only http and https endpoints are allowed.",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "endpoint",
            "Put credentials in a secret header, not in the URL.",
        ));
    }
    Ok(endpoint.to_owned())
}

fn check_method(method: &str) -> AppResult<String> {
    let method = method.trim().to_ascii_uppercase();
    if matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH") {
        Ok(method)
    } else {
        Err(bad("method", "Use GET, POST, PUT or PATCH."))
    }
}

fn check_tokens_path(path: &str) -> AppResult<String> {
    let path = path.trim();
    if path.is_empty() || path.len() > 200 || path.split('.').any(str::is_empty) {
        return Err(bad(
            "tokensPath",
            "A dot path into the answer, such as usage.total_tokens.",
        ));
    }
    Ok(path.to_owned())
}

/// Encrypts secret values; a secret without a value keeps the one stored under the same name.
fn store_headers(
    app: &AppState,
    headers: Vec<HeaderInput>,
    existing: &[StoredHeader],
) -> AppResult<serde_json::Value> {
    if headers.len() > 20 {
        return Err(bad("headers", "At most 20 headers."));
    }
    let mut stored = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.name.trim().to_ascii_lowercase();
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || RESERVED_HEADERS.contains(&name.as_str())
        {
            return Err(bad(
                "headers",
                &format!("`{name}` cannot be set as an extra header."),
            ));
        }
        if stored.iter().any(|h: &StoredHeader| h.name == name) {
            return Err(bad("headers", &format!("`{name}` is listed twice.")));
        }
        let value = match header.value {
            Some(value) => {
                if axum::http::HeaderValue::from_str(&value).is_err() {
                    return Err(bad(
                        "headers",
                        &format!("The value of `{name}` is not a valid header value."),
                    ));
                }
                Some(value)
            }
            None => None,
        };
        let entry = match (header.secret, value) {
            (true, Some(value)) => {
                let (nonce, ciphertext) =
                    crypto::encrypt(app.keys.encryption_key.expose(), &name, &value)?;
                StoredHeader {
                    name,
                    value: None,
                    nonce: Some(nonce),
                    ciphertext: Some(ciphertext),
                }
            }
            (true, None) => existing
                .iter()
                .find(|h| h.name == name && h.is_secret())
                .cloned()
                .ok_or_else(|| {
                    bad(
                        "headers",
                        &format!("Give a value for the new secret header `{name}`."),
                    )
                })?,
            (false, Some(value)) => StoredHeader {
                name,
                value: Some(value),
                nonce: None,
                ciphertext: None,
            },
            (false, None) => return Err(bad("headers", &format!("Give a value for `{name}`."))),
        };
        stored.push(entry);
    }
    serde_json::to_value(stored).map_err(AppError::internal)
}

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
        min_tier: input.min_tier.unwrap_or(PlanTier::Free),
        enabled: input.enabled.unwrap_or(true),
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
        "minTier": row.min_tier,
        "enabled": row.enabled,
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

fn check_timeout(ms: i32) -> AppResult<i32> {
    if (100..=300_000).contains(&ms) {
        Ok(ms)
    } else {
        Err(bad("timeoutMs", "Between 100 and 300000 milliseconds."))
    }
}

fn check_estimate(tokens: i64) -> AppResult<i64> {
    if (1..=100_000_000).contains(&tokens) {
        Ok(tokens)
    } else {
        Err(bad("estimatedTokens", "Between 1 and 100000000 tokens."))
    }
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
        endpoint: input.endpoint.as_deref().map(check_endpoint).transpose()?,
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
        min_tier: input.min_tier,
        enabled: input.enabled,
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
) -> AppResult<Option<ToolRow>> {
    let tool = app
        .caches
        .tools
        .get_or_load(id, async {
            let mut conn = app.pool.get().await?;
            Ok::<_, AppError>(repo::find(&mut conn, id).await?)
        })
        .await?;
    Ok(tool.filter(|t| include_disabled || t.enabled))
}

/// Tools by id, deleted and disabled ones included (usage history refers to them).
pub async fn get_many_with_deleted(app: &AppState, ids: &[Uuid]) -> AppResult<Vec<ToolRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::find_many_with_deleted(&mut conn, ids).await?)
}

/// One page of the catalogue and the total count.
pub async fn list(
    app: &AppState,
    listing: &Listing<'_>,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> AppResult<(Vec<ToolRow>, i64)> {
    let mut conn = app.pool.get().await?;
    let rows = repo::list(&mut conn, listing, after, limit).await?;
    let total = repo::count(&mut conn, listing).await?;
    Ok((rows, total))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slugify("  Text Summarizer! "), "text-summarizer");
        assert_eq!(slugify("GPT-4 / Vision"), "gpt-4-vision");
    }

    #[test]
    fn endpoints_must_be_http_urls_without_credentials() {
        assert!(check_endpoint("https://api.example.com/v1").is_ok());
        assert!(check_endpoint("ftp://example.com").is_err());
        assert!(check_endpoint("https://user:pw@example.com").is_err());
        assert!(check_endpoint("not a url").is_err());
    }
}
