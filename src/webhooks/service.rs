//! A user's webhook endpoints: registering, changing, rotating the secret, deleting, test deliveries,
//! replays and the delivery log. Endpoints follow the address rules of tool endpoints.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use uuid::Uuid;

use super::delivery::{self, TEST_TYPE};
use super::model::{AttemptRow, DeliveryRow, DeliveryStatus, EndpointRow};
use super::{repo, signing};
use crate::app::AppState;
use crate::clock::after;
use crate::error::{AppError, AppResult};
use crate::notifications::model::EventType;
use crate::users::model::UserId;

/// Endpoints one user may have.
const MOST_ENDPOINTS: i64 = 10;
/// How long a rotated secret keeps signing beside its successor.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// How long the delivery log is kept.
const LOG_KEPT_FOR: Duration = Duration::from_secs(30 * 86_400);

/// An endpoint with its secret, shown once (at creation and rotation).
pub struct WithSecret {
    pub endpoint: EndpointRow,
    pub secret: String,
}

/// A delivery with its attempts, oldest first.
pub struct Logged {
    pub delivery: DeliveryRow,
    pub attempts: Vec<AttemptRow>,
}

fn not_found() -> AppError {
    AppError::NotFound("You have no webhook endpoint with that id.".into())
}

/// A URL webhooks may be sent to: http or https, no credentials in it, and not a private address
/// unless private addresses are allowed (the client also checks where it actually connects).
fn check_url(app: &AppState, url: &str) -> AppResult<String> {
    let url = url.trim();
    let bad = |message: &str| AppError::bad_input("url", message);
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| bad("Give a full URL such as https://example.com/hooks/joyfull."))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || url.len() > 2000
    {
        return Err(bad(
            "Only http and https URLs (up to 2000 characters) are allowed.",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "Leave credentials out of the URL: deliveries are signed instead.",
        ));
    }
    if let Some(why) = crate::gateway::destination::literal_refused(
        url,
        app.config.gateway.allow_private_upstreams,
    ) {
        return Err(bad(&format!(
            "Webhooks may only go to public addresses: {why}."
        )));
    }
    Ok(url.to_owned())
}

/// The stored form of an event list: `None` for all events; an empty list is refused.
fn events_of(events: Option<Vec<EventType>>) -> AppResult<Option<Vec<String>>> {
    match events {
        None => Ok(None),
        Some(events) if events.is_empty() => Err(AppError::bad_input(
            "events",
            "Name at least one event, or leave `events` out for all of them.",
        )),
        Some(mut events) => {
            events.sort_by_key(|event| event.as_db());
            events.dedup();
            Ok(Some(events.iter().map(|e| e.as_db().to_owned()).collect()))
        }
    }
}

fn description_of(description: Option<String>) -> AppResult<String> {
    let description = description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > 200 {
        return Err(AppError::bad_input(
            "description",
            "Keep it to 200 characters.",
        ));
    }
    Ok(description)
}

/// `secret` encrypted for endpoint `id`: `(nonce, ciphertext)`.
fn sealed(app: &AppState, id: Uuid, secret: &str) -> AppResult<(String, String)> {
    crate::tools::crypto::encrypt(
        app.keys.encryption_key.expose(),
        &format!("webhook:{id}"),
        secret,
    )
}

pub async fn create(
    app: &AppState,
    user: UserId,
    url: &str,
    events: Option<Vec<EventType>>,
    description: Option<String>,
) -> AppResult<WithSecret> {
    let url = check_url(app, url)?;
    let events = events_of(events)?;
    let description = description_of(description)?;
    let id = Uuid::now_v7();
    let secret = signing::new_secret();
    let (nonce, ciphertext) = sealed(app, id, &secret)?;
    let now = Utc::now();
    let endpoint = EndpointRow {
        id,
        user_id: user.0,
        url,
        description,
        events,
        secret_nonce: nonce,
        secret_ciphertext: ciphertext,
        previous_nonce: None,
        previous_ciphertext: None,
        previous_until: None,
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        if repo::count_endpoints(conn, user.0).await? >= MOST_ENDPOINTS {
            return Err(AppError::Conflict(format!(
                "You have {MOST_ENDPOINTS} webhook endpoints already; delete one first."
            )));
        }
        repo::insert_endpoint(conn, &endpoint).await?;
        Ok(())
    })
    .await?;
    tracing::info!(endpoint_id = %id, user_id = %user.0, "webhook endpoint created");
    Ok(WithSecret { endpoint, secret })
}

pub async fn list(app: &AppState, user: UserId) -> AppResult<Vec<EndpointRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::endpoints_of(&mut conn, user.0).await?)
}

/// The caller's endpoint `id`, locked, in the caller's transaction.
async fn own_locked(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: Uuid,
) -> AppResult<EndpointRow> {
    repo::lock_endpoint(conn, id)
        .await?
        .filter(|endpoint| endpoint.user_id == user.0)
        .ok_or_else(not_found)
}

/// What `updateWebhookEndpoint` may change; `None` keeps it.
pub struct Changes {
    pub url: Option<String>,
    /// `Some(None)` takes every event again.
    pub events: Option<Option<Vec<EventType>>>,
    pub description: Option<String>,
    /// Enabling an endpoint clears its failure record.
    pub enabled: Option<bool>,
}

pub async fn update(
    app: &AppState,
    user: UserId,
    id: Uuid,
    changes: Changes,
) -> AppResult<EndpointRow> {
    let url = changes
        .url
        .as_deref()
        .map(|url| check_url(app, url))
        .transpose()?;
    let events = changes.events.map(events_of).transpose()?;
    let description = changes
        .description
        .map(|d| description_of(Some(d)))
        .transpose()?;
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let mut endpoint = own_locked(conn, user, id).await?;
        if let Some(url) = url {
            endpoint.url = url;
        }
        if let Some(events) = events {
            endpoint.events = events;
        }
        if let Some(description) = description {
            endpoint.description = description;
        }
        if let Some(enabled) = changes.enabled {
            if enabled && !endpoint.enabled {
                endpoint.disabled_reason = None;
                endpoint.failing_since = None;
            }
            if !enabled && endpoint.enabled {
                endpoint.disabled_reason = Some("Disabled by its owner.".into());
            }
            endpoint.enabled = enabled;
        }
        endpoint.updated_at = Utc::now();
        repo::save_endpoint(conn, &endpoint).await?;
        Ok(endpoint)
    })
    .await
}

pub async fn delete(app: &AppState, user: UserId, id: Uuid) -> AppResult<bool> {
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        own_locked(conn, user, id).await?;
        repo::delete_endpoint(conn, id).await?;
        Ok(true)
    })
    .await
}

/// A new secret; the old one keeps signing beside it for [`ROTATION_OVERLAP`].
pub async fn rotate_secret(app: &AppState, user: UserId, id: Uuid) -> AppResult<WithSecret> {
    let secret = signing::new_secret();
    let (nonce, ciphertext) = sealed(app, id, &secret)?;
    let now = Utc::now();
    let mut conn = app.pool.get().await?;
    let endpoint = conn
        .transaction::<_, AppError, _>(async |conn| {
            let mut endpoint = own_locked(conn, user, id).await?;
            endpoint.previous_nonce = Some(std::mem::replace(&mut endpoint.secret_nonce, nonce));
            endpoint.previous_ciphertext = Some(std::mem::replace(
                &mut endpoint.secret_ciphertext,
                ciphertext,
            ));
            endpoint.previous_until = Some(after(app.clock.now(), ROTATION_OVERLAP));
            endpoint.updated_at = now;
            repo::save_endpoint(conn, &endpoint).await?;
            Ok(endpoint)
        })
        .await?;
    Ok(WithSecret { endpoint, secret })
}

/// Sends a test delivery to endpoint `id` at once; it is logged and retried like any other.
pub async fn send_test(app: &AppState, user: UserId, id: Uuid) -> AppResult<Logged> {
    let now = app.clock.now();
    let delivery = {
        let mut conn = app.pool.get().await?;
        let endpoint = repo::endpoint(&mut conn, id)
            .await?
            .filter(|endpoint| endpoint.user_id == user.0)
            .ok_or_else(not_found)?;
        let data =
            json!({ "endpointId": endpoint.id, "message": "A test delivery from Joyfull Hub." });
        let delivery = delivery::new_delivery(
            &endpoint,
            None,
            TEST_TYPE,
            delivery::body(TEST_TYPE, now, &data),
            now,
        );
        repo::insert_delivery(&mut conn, &delivery).await?;
        delivery
    };
    delivery::deliver_now(app, delivery.id).await?;
    logged(app, user, delivery.id).await
}

/// Sends delivery `id` again, as a new delivery with the same `webhook-id` and body.
pub async fn replay(app: &AppState, user: UserId, id: Uuid) -> AppResult<Logged> {
    let now = app.clock.now();
    let replayed = {
        let mut conn = app.pool.get().await?;
        let original = repo::delivery(&mut conn, id)
            .await?
            .filter(|delivery| delivery.user_id == user.0)
            .ok_or_else(|| {
                AppError::NotFound("You have no webhook delivery with that id.".into())
            })?;
        let replayed = DeliveryRow {
            id: Uuid::now_v7(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_status_code: None,
            last_error: None,
            created_at: now,
            delivered_at: None,
            ..original
        };
        repo::insert_delivery(&mut conn, &replayed).await?;
        replayed
    };
    delivery::deliver_now(app, replayed.id).await?;
    logged(app, user, replayed.id).await
}

async fn logged(app: &AppState, user: UserId, id: Uuid) -> AppResult<Logged> {
    let mut conn = app.pool.get().await?;
    let delivery = repo::delivery(&mut conn, id)
        .await?
        .filter(|delivery| delivery.user_id == user.0)
        .ok_or_else(|| AppError::NotFound("You have no webhook delivery with that id.".into()))?;
    let attempts = repo::attempts_of(&mut conn, &[id]).await?;
    Ok(Logged { delivery, attempts })
}

/// One page of an endpoint's deliveries with their attempts, newest first, and whether more follow.
pub async fn deliveries(
    app: &AppState,
    user: UserId,
    endpoint: Uuid,
    status: Option<DeliveryStatus>,
    after_position: Option<(DateTime<Utc>, Uuid)>,
    first: i64,
) -> AppResult<(Vec<Logged>, bool)> {
    let mut conn = app.pool.get().await?;
    repo::endpoint(&mut conn, endpoint)
        .await?
        .filter(|row| row.user_id == user.0)
        .ok_or_else(not_found)?;
    let rows =
        repo::deliveries_page(&mut conn, endpoint, status, after_position, first + 1).await?;
    let (rows, has_next) = crate::db::one_page(rows, first);
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut attempts = repo::attempts_of(&mut conn, &ids).await?;
    let logged = rows
        .into_iter()
        .map(|delivery| {
            let (mine, rest) = attempts
                .drain(..)
                .partition(|a| a.delivery_id == delivery.id);
            attempts = rest;
            Logged {
                delivery,
                attempts: mine,
            }
        })
        .collect();
    Ok((logged, has_next))
}

/// Drops the log of deliveries finished more than [`LOG_KEPT_FOR`] ago (the sweeper calls it).
pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> AppResult<()> {
    let mut conn = app.pool.get().await?;
    let before = now - chrono::Duration::from_std(LOG_KEPT_FOR).unwrap_or_default();
    repo::delete_finished_before(&mut conn, before).await?;
    Ok(())
}

/// Forgets a user's endpoints (and so their deliveries) inside the caller's transaction.
pub async fn forget_user_in(conn: &mut AsyncPgConnection, user: Uuid) -> diesel::QueryResult<()> {
    repo::delete_for_user(conn, user).await?;
    Ok(())
}
