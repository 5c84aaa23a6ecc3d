//! Turns a request's credentials into a [`Caller`]. A credential that is present but expired,
//! tampered with, revoked, or whose account is suspended or gone is refused with `UNAUTHENTICATED`:
//! it is never silently treated as anonymous.

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};

use super::identity::{AuthenticatedUser, Caller, Credential};
use super::repo as auth_repo;
use crate::app::AppState;
use crate::error::AppError;
use crate::keys::model::API_KEY_PREFIX;
use crate::keys::service as keys;
use crate::users::model::{UserAccess, UserId, UserStatus};
use crate::users::repo as users;

/// Reads `Authorization: Bearer …` (an access token or an API key) or `X-API-Key`.
pub async fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Caller, AppError> {
    if let Some(key) = headers.get("x-api-key") {
        let key = key
            .to_str()
            .map_err(|_| AppError::Unauthenticated("The API key is not valid.".into()))?;
        return keys::authenticate(app, key.trim()).await.map(Caller::User);
    }
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let authorization = authorization
        .to_str()
        .map_err(|_| AppError::Unauthenticated("The Authorization header is not valid.".into()))?;
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            AppError::Unauthenticated("Use `Authorization: Bearer <token or API key>`.".into())
        })?;
    if token.starts_with(API_KEY_PREFIX) {
        return keys::authenticate(app, token).await.map(Caller::User);
    }
    access_token(app, token).await.map(Caller::User)
}

/// When the access token in these credentials expires; `None` for an API key, no credential, or a token
/// that does not verify.
pub fn access_token_expiry(app: &AppState, headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .get("Bearer ".len()..)?
        .trim();
    if token.starts_with(API_KEY_PREFIX) {
        return None;
    }
    let claims = app.verified_tokens.claims(token).ok()?;
    DateTime::from_timestamp(claims.exp, 0)
}

async fn access_token(app: &AppState, token: &str) -> Result<AuthenticatedUser, AppError> {
    let claims = app.verified_tokens.claims(token)?;
    let id = uuid::Uuid::parse_str(&claims.sub).map_err(|_| {
        AppError::Unauthenticated("The access token is not valid: log in again.".into())
    })?;
    let user = app
        .caches
        .users
        .get_or_load(id, async {
            let mut conn = app.pool.get().await?;
            let user = users::find_by_id(&mut conn, UserId(id)).await?;
            Ok::<_, AppError>(user.map(|u| UserAccess::from(&u)))
        })
        .await?
        .ok_or_else(|| AppError::Unauthenticated("This account no longer exists.".into()))?;
    if user.deleted {
        return Err(AppError::Unauthenticated(
            "This account no longer exists.".into(),
        ));
    }
    if user.status == UserStatus::Suspended {
        return Err(AppError::Unauthenticated(
            "This account is suspended.".into(),
        ));
    }
    if claims.sv != user.session_version {
        return Err(AppError::Unauthenticated(
            "This session ended when the password changed: log in again.".into(),
        ));
    }
    if let Some(session) = claims
        .sid
        .as_deref()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
    {
        let ended = app
            .caches
            .ended_sessions
            .get_or_load(id, async {
                let mut conn = app.pool.get().await?;
                let ended = auth_repo::ended_sessions_of(&mut conn, id, Utc::now()).await?;
                Ok::<_, AppError>(Some(std::sync::Arc::new(ended)))
            })
            .await?
            .unwrap_or_default();
        if ended.contains(&session) {
            return Err(AppError::Unauthenticated(
                "This session was logged out: log in again.".into(),
            ));
        }
    }
    Ok(AuthenticatedUser {
        id: user.id,
        role: user.role,
        credential: Credential::AccessToken,
        email_verified: user.email_verified,
    })
}
