//! Sessions: what a login hands out (an access token and a chain of refresh tokens, the session's
//! "family"), how long a session may last, and ending one at once on every instance.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::model::NewRefreshToken;
use super::repo;
use super::tokens::{issue_access_token, random_token};
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::users::model::UserRow;

const REFRESH_PREFIX: &str = "jhr_";

/// What a successful login, registration or refresh hands out.
pub struct Session {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub user: UserRow,
}

/// Ends a session at once, on every instance: its refresh tokens are revoked, and its access tokens are
/// refused from now on (the ended session is remembered until the last of them has expired). Returns
/// how many refresh tokens were revoked.
pub(super) async fn end_session(
    app: &AppState,
    conn: &mut AsyncPgConnection,
    family: Uuid,
    user: Uuid,
) -> AppResult<usize> {
    let now = Utc::now();
    // Tokens are accepted up to the decoder's leeway past their expiry.
    let forget_after =
        crate::clock::after(now, app.config.auth.access_token_ttl) + chrono::Duration::seconds(60);
    let revoked = conn
        .transaction::<_, AppError, _>(async |conn| {
            let revoked = repo::revoke_family(conn, family, now).await?;
            repo::end_session(conn, family, user, now, forget_after).await?;
            Ok(revoked)
        })
        .await?;
    app.caches.invalidate_user(user);
    Ok(revoked)
}

/// Forgets ended sessions whose access tokens have all expired.
pub async fn sweep_ended_sessions(app: &AppState) -> AppResult<usize> {
    let mut conn = app.pool.get().await?;
    Ok(repo::forget_ended_sessions(&mut conn, Utc::now()).await?)
}

/// When a session (a refresh-token family) ends however often it is refreshed: its login plus
/// `HUB_SESSION_MAX_DAYS`. Family ids are UUIDv7, so the login time is the id's own timestamp.
pub(super) fn session_ends_at(app: &AppState, family: Uuid) -> DateTime<Utc> {
    let started = family
        .get_timestamp()
        .and_then(|ts| {
            let (seconds, nanos) = ts.to_unix();
            DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
        })
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    crate::clock::after(started, app.config.auth.refresh_family_lifetime)
}

/// Issues an access token and a refresh token (a new family unless `family` continues one).
pub(super) async fn start_session(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: UserRow,
    family: Option<Uuid>,
    now: DateTime<Utc>,
) -> AppResult<Session> {
    let family = family.unwrap_or_else(Uuid::now_v7);
    let expires_at = crate::clock::after(now, app.config.auth.refresh_token_ttl)
        .min(session_ends_at(app, family));
    let (refresh_token, hash) = random_token(REFRESH_PREFIX);
    repo::insert_refresh_token(
        conn,
        NewRefreshToken {
            id: Uuid::now_v7(),
            user_id: user.id,
            family_id: family,
            token_hash: &hash,
            expires_at,
        },
    )
    .await?;
    let (access_token, access_token_expires_at) = issue_access_token(
        &app.keys,
        user.id(),
        user.role(),
        user.session_version,
        family,
        now,
        app.config.auth.access_token_ttl,
    )?;
    Ok(Session {
        access_token,
        access_token_expires_at,
        refresh_token,
        user,
    })
}
