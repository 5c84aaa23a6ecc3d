//! API key rules: creation (shown once), listing, revocation, and authenticating a request by key.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::model::API_KEY_PREFIX;
use super::model::{ApiKeyId, ApiKeyRow, DEFAULT_SCOPES, KeyLimits, NewApiKey, Scope, Scopes};
use super::repo;
use crate::app::AppState;
use crate::audit::service::Actor;
use crate::auth::identity::{AuthenticatedUser, Credential};
use crate::auth::tokens::{hash_token, random_token};
use crate::error::{AppError, AppResult};
use crate::notifications::model::EventType;
use crate::notifications::record::record_in;
use crate::users::model::{Role, UserAccess, UserId, UserStatus};

/// Most active keys one user may hold.
pub const MAX_ACTIVE_KEYS: i64 = 50;
/// `lastUsedAt` is written at most this often per key, so using a key costs no write per request.
const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

/// A key just created: the secret, shown this once, and its row.
pub struct CreatedKey {
    pub secret: String,
    pub row: ApiKeyRow,
}

/// Creates a key for the caller with `scopes` (the default set when `None`). A key never creates a key
/// with a scope it lacks; the admin scope takes an administrator's signed-in session.
#[tracing::instrument(skip_all, fields(user_id = %creator.id.0))]
pub async fn create(
    app: &AppState,
    creator: &AuthenticatedUser,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    scopes: Option<Vec<Scope>>,
    limits: KeyLimits,
    origin: &Actor,
) -> AppResult<CreatedKey> {
    creator.require_verified_email(app.config.require_verified_email, "create API keys")?;
    check_limits(limits)?;
    let user = creator.id;
    let scopes: Vec<Scope> = scopes.unwrap_or_else(|| DEFAULT_SCOPES.to_vec());
    if scopes.is_empty() {
        return Err(AppError::bad_input(
            "scopes",
            "Give the key at least one scope.",
        ));
    }
    let scopes: Scopes = scopes.into_iter().collect();
    if scopes.contains(Scope::Admin) {
        if creator.role != Role::Admin {
            return Err(AppError::Forbidden(
                "Only administrators can create a key with the ADMIN scope.".into(),
            ));
        }
        creator.require_session("Creating a key with the ADMIN scope")?;
    }
    for scope in scopes.to_vec() {
        creator.require(scope)?;
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::bad_input(
            "name",
            "Give the key a name of 1 to 100 characters.",
        ));
    }
    let now = Utc::now();
    if expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::bad_input(
            "expiresAt",
            "The expiry must be in the future.",
        ));
    }
    let mut conn = app.pool.get().await?;
    // A key with limits of its own could otherwise mint keys without them.
    if let Some(creating_key) = creator.api_key()
        && repo::limits_of(&mut conn, creating_key.0)
            .await?
            .is_some_and(|limits| limits.any())
    {
        return Err(AppError::Forbidden(
            "A key with limits of its own cannot create keys.".into(),
        ));
    }
    if repo::count_active_for_user(&mut conn, user.0, now).await? >= MAX_ACTIVE_KEYS {
        return Err(AppError::bad_input(
            "name",
            format!("You already have {MAX_ACTIVE_KEYS} active keys: revoke one first."),
        ));
    }
    let (secret, hash) = random_token(API_KEY_PREFIX);
    let prefix: String = secret.chars().take(API_KEY_PREFIX.len() + 8).collect();
    let row =
        diesel_async::AsyncConnection::transaction::<_, AppError, _>(&mut *conn, async |conn| {
            let row = repo::insert(
                conn,
                NewApiKey {
                    id: Uuid::now_v7(),
                    user_id: user.0,
                    name,
                    prefix: &prefix,
                    key_hash: &hash,
                    expires_at,
                    scopes: scopes.to_vec(),
                    requests_per_minute: limits.requests_per_minute,
                    token_budget: limits.token_budget,
                },
            )
            .await?;
            if limits.any() {
                crate::billing::key_spending::open_in(conn, row.id, user).await?;
            }
            audit_key(conn, origin, "api_key.create", &row).await?;
            record_in(
                conn,
                EventType::ApiKeyCreated,
                Some(user.0),
                key_payload(&row),
            )
            .await?;
            Ok(row)
        })
        .await?;
    tracing::info!(key_id = %row.id, prefix = %row.prefix, scopes = ?row.scopes, "API key created");
    Ok(CreatedKey { secret, row })
}

/// Unrevoked keys that expire within `within` of `now` (for the expiry notice).
pub async fn expiring_soon(
    app: &AppState,
    now: DateTime<Utc>,
    within: std::time::Duration,
) -> AppResult<Vec<ApiKeyRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::expiring_between(&mut conn, now, crate::clock::after(now, within)).await?)
}

pub async fn list(app: &AppState, user: UserId) -> AppResult<Vec<ApiKeyRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::list_for_user(&mut conn, user.0).await?)
}

/// Sets the limits of one of the caller's keys (replacing both), from a signed-in session; they narrow
/// the plan's, which still apply.
#[tracing::instrument(skip_all, fields(user_id = %caller.id.0, key_id = %id))]
pub async fn set_limits(
    app: &AppState,
    caller: &AuthenticatedUser,
    id: Uuid,
    limits: KeyLimits,
    origin: &Actor,
) -> AppResult<ApiKeyRow> {
    // A key could lift its own limits.
    caller.require_session("Changing a key's limits")?;
    check_limits(limits)?;
    let user = caller.id;
    let mut conn = app.pool.get().await?;
    let row =
        diesel_async::AsyncConnection::transaction::<_, AppError, _>(&mut *conn, async |conn| {
            let row = repo::set_limits(conn, user.0, id, limits)
                .await?
                .ok_or_else(|| AppError::NotFound("You have no API key with that id.".into()))?;
            if limits.any() {
                crate::billing::key_spending::open_in(conn, row.id, user).await?;
            }
            audit_key(conn, origin, "api_key.limits", &row).await?;
            Ok(row)
        })
        .await?;
    // Billing counts a key apart only while its cached row says it has limits.
    app.caches.invalidate_user(row.user_id);
    tracing::info!(?limits, "API key limits set");
    Ok(row)
}

/// Most requests per minute a key may be given (no plan sells more).
const MAX_KEY_REQUESTS_PER_MINUTE: i32 = 1_000_000;
/// Largest token budget a key may be given.
const MAX_KEY_TOKEN_BUDGET: i64 = 1_000_000_000_000_000;

fn check_limits(limits: KeyLimits) -> AppResult<()> {
    if limits
        .requests_per_minute
        .is_some_and(|r| !(1..=MAX_KEY_REQUESTS_PER_MINUTE).contains(&r))
    {
        return Err(AppError::bad_input(
            "requestsPerMinute",
            format!("Between 1 and {MAX_KEY_REQUESTS_PER_MINUTE}, or null for the plan's rate."),
        ));
    }
    if limits
        .token_budget
        .is_some_and(|b| !(1..=MAX_KEY_TOKEN_BUDGET).contains(&b))
    {
        return Err(AppError::bad_input(
            "tokenBudget",
            format!("Between 1 and {MAX_KEY_TOKEN_BUDGET}, or null for the plan's limit alone."),
        ));
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(user_id = %user.0, key_id = %id))]
pub async fn revoke(
    app: &AppState,
    user: UserId,
    id: Uuid,
    origin: &Actor,
) -> AppResult<ApiKeyRow> {
    let mut conn = app.pool.get().await?;
    let row =
        diesel_async::AsyncConnection::transaction::<_, AppError, _>(&mut *conn, async |conn| {
            let row = repo::revoke(conn, user.0, id, Utc::now())
                .await?
                .ok_or_else(|| AppError::NotFound("You have no API key with that id.".into()))?;
            audit_key(conn, origin, "api_key.revoke", &row).await?;
            record_in(
                conn,
                EventType::ApiKeyRevoked,
                Some(row.user_id),
                key_payload(&row),
            )
            .await?;
            Ok(row)
        })
        .await?;
    app.caches.invalidate_user(row.user_id);
    tracing::info!(prefix = %row.prefix, "API key revoked");
    Ok(row)
}

/// What an event about a key says of it (never the secret).
fn key_payload(row: &ApiKeyRow) -> serde_json::Value {
    serde_json::json!({
        "keyId": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "expiresAt": row.expires_at,
    })
}

/// Records an owner's action on their key (the secret is never in it).
async fn audit_key(
    conn: &mut diesel_async::AsyncPgConnection,
    origin: &Actor,
    action: &str,
    row: &ApiKeyRow,
) -> diesel::QueryResult<()> {
    crate::audit::service::record_in(
        conn,
        &origin.as_user(row.user_id),
        crate::audit::service::Event {
            action,
            target_type: "api_key",
            target_id: Some(row.id.to_string()),
            before: None,
            after: Some(
                serde_json::json!({ "name": row.name, "prefix": row.prefix, "scopes": row.scopes }),
            ),
        },
    )
    .await
}

/// Revokes any user's key (administrators), recording it in the audit trail in the same transaction.
#[tracing::instrument(skip_all, fields(key_id = %id))]
pub async fn admin_revoke(
    app: &AppState,
    actor: &crate::audit::service::Actor,
    id: Uuid,
) -> AppResult<ApiKeyRow> {
    let mut conn = app.pool.get().await?;
    let row = diesel_async::AsyncConnection::transaction::<_, AppError, _>(&mut *conn, async |conn| {
        let row = repo::revoke_any(conn, id, Utc::now())
            .await?
            .ok_or_else(|| AppError::NotFound("There is no API key with that id.".into()))?;
        crate::audit::service::record_in(
            conn,
            actor,
            crate::audit::service::Event {
                action: "api_key.revoke",
                target_type: "api_key",
                target_id: Some(row.id.to_string()),
                before: None,
                after: Some(serde_json::json!({ "owner": row.user_id, "prefix": row.prefix, "name": row.name })),
            },
        )
        .await?;
        record_in(conn, EventType::ApiKeyRevoked, Some(row.user_id), key_payload(&row)).await?;
        tracing::info!(prefix = %row.prefix, "API key revoked by an administrator");
        Ok(row)
    })
    .await?;
    app.caches.invalidate_user(row.user_id);
    Ok(row)
}

/// The caller a key stands for. Unknown, revoked and expired keys, and keys of suspended or deleted
/// accounts, are refused. The key and its owner come from this instance's cache when it has them
/// (`crate::cache`: a revocation or suspension drops them at once here and within milliseconds on
/// other instances); expiry is checked on every request.
pub async fn authenticate(app: &AppState, key: &str) -> AppResult<AuthenticatedUser> {
    let refused = |why: &str| AppError::Unauthenticated(why.to_owned());
    if !key.starts_with(API_KEY_PREFIX) {
        return Err(refused("The API key is not valid."));
    }
    let hash = hash_token(key);
    let cache_key = crate::cache::key_of(&hash);
    let cached = app.caches.api_keys.get(&cache_key).and_then(|row| {
        let user = app.caches.users.get(&row.user_id)?;
        Some((row, user))
    });
    let (row, user) = match cached {
        Some(hit) => hit,
        None => {
            let ticket = app.caches.ticket();
            let mut conn = app.pool.get().await?;
            let (row, user) = repo::find_by_hash(&mut conn, &hash)
                .await?
                .ok_or_else(|| refused("The API key is not valid."))?;
            let user = UserAccess::from(&user);
            app.caches
                .api_keys
                .put(ticket, cache_key.clone(), row.clone());
            app.caches.users.put(ticket, user.id.0, user.clone());
            (row, user)
        }
    };
    let now = Utc::now();
    if row.revoked_at.is_some() {
        return Err(refused("This API key has been revoked."));
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Err(refused("This API key has expired."));
    }
    if user.deleted {
        return Err(refused("The API key is not valid."));
    }
    if user.status == UserStatus::Suspended {
        return Err(refused("This account is suspended."));
    }
    if row
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_RESOLUTION)
    {
        let mut conn = app.pool.get().await?;
        repo::touch(&mut conn, row.id, now).await?;
        app.caches
            .api_keys
            .update(&cache_key, |cached| cached.last_used_at = Some(now));
    }
    Ok(AuthenticatedUser {
        id: user.id,
        role: user.role,
        credential: Credential::ApiKey {
            id: ApiKeyId(row.id),
            scopes: row.scopes(),
            limited: row.requests_per_minute.is_some() || row.token_budget.is_some(),
        },
        email_verified: user.email_verified,
    })
}

/// Forgets a user's keys inside the caller's transaction (the account is being deleted).
pub async fn forget_user_in(
    conn: &mut diesel_async::AsyncPgConnection,
    user: UserId,
) -> diesel::QueryResult<()> {
    repo::delete_all_for_user(conn, user.0).await?;
    Ok(())
}
