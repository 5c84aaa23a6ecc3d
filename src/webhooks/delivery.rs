//! Queueing deliveries and sending them.
//!
//! - `enqueue_in` queues one delivery per enabled endpoint of the recipient that takes the event, in the
//!   dispatcher's transaction.
//! - Workers in every instance claim due deliveries with `FOR UPDATE SKIP LOCKED` (held for [`CLAIM`],
//!   eight times as long as a request may take, so a worker that dies mid-send leaves the delivery to
//!   another) and POST each in a task of its own (at most 64 in flight per instance), signed, with the client that calls tools: public addresses only (unless private ones
//!   are allowed), no redirects followed (a `3xx` is a failure), no proxy.
//! - A failed attempt is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (about 27 hours), then
//!   given up. Every attempt is logged with its status, latency and the start of the answer.
//! - An endpoint with no success for [`DISABLE_AFTER`] is disabled, its pending deliveries given up, and
//!   its owner told (`webhook.endpoint_disabled`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{AttemptRow, DeliveryRow, DeliveryStatus, EndpointRow};
use super::{repo, signing};
use crate::app::AppState;
use crate::clock::after;
use crate::error::{AppError, AppResult};
use crate::notifications::model::{EventType, OutboxEventRow};

/// How long one delivery request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claimed delivery is held by its worker.
const CLAIM: Duration = Duration::from_secs(120);
/// How often a worker looks for due deliveries.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Deliveries claimed at a time.
const BATCH: i64 = 20;
/// The pauses after each failed attempt; after the last, the delivery is given up.
const RETRY_AFTER: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// An endpoint failing without a success for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How much of an answer the log keeps.
const EXCERPT_BYTES: usize = 512;
/// The type of a test delivery (`sendTestWebhook`).
pub const TEST_TYPE: &str = "webhook.test";

/// A delivery's body: `{"type", "timestamp", "data"}`, as Standard Webhooks recommends.
pub fn body(kind: &str, at: DateTime<Utc>, data: &Value) -> String {
    json!({ "type": kind, "timestamp": at, "data": data }).to_string()
}

/// A new delivery of `body` to `endpoint`, due at `now`.
pub fn new_delivery(
    endpoint: &EndpointRow,
    event: Option<Uuid>,
    kind: &str,
    body: String,
    now: DateTime<Utc>,
) -> DeliveryRow {
    let id = Uuid::now_v7();
    DeliveryRow {
        id,
        message_id: id,
        endpoint_id: endpoint.id,
        user_id: endpoint.user_id,
        event_id: event,
        kind: kind.to_owned(),
        body,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        last_status_code: None,
        last_error: None,
        created_at: now,
        delivered_at: None,
    }
}

/// Queues `event` for every enabled endpoint of `user` that takes its type (the dispatcher's
/// transaction).
pub async fn enqueue_in(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: Uuid,
    kind: EventType,
    event: &OutboxEventRow,
) -> diesel::QueryResult<()> {
    let now = app.clock.now();
    let body = body(kind.as_db(), event.created_at, &event.payload);
    for endpoint in repo::endpoints_of(conn, user).await? {
        if endpoint.enabled && endpoint.takes(kind.as_db()) {
            let delivery = new_delivery(&endpoint, Some(event.id), kind.as_db(), body.clone(), now);
            repo::insert_delivery(conn, &delivery).await?;
        }
    }
    Ok(())
}

/// Starts sending the deliveries due now, each in a task of its own holding one of the instance's
/// [`IN_FLIGHT`](super::model::IN_FLIGHT) slots, so an endpoint that answers slowly (or never) holds up no other; how many were
/// claimed. It claims no more than the free slots.
pub async fn start_due(app: &AppState) -> AppResult<usize> {
    let free = app
        .webhook_slots
        .available_permits()
        .min(usize::try_from(BATCH).unwrap_or(0));
    if free == 0 {
        return Ok(0);
    }
    let now = app.clock.now();
    let claimed = {
        let mut conn = app.pool.get().await?;
        let limit = i64::try_from(free).unwrap_or(BATCH);
        repo::claim_due(&mut conn, now, after(now, CLAIM), limit, None).await?
    };
    let count = claimed.len();
    for delivery in claimed {
        let Ok(slot) = Arc::clone(&app.webhook_slots).acquire_owned().await else {
            break;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let id = delivery.id;
            // One that cannot be made (its secret unreadable, say) is logged; its claim runs out and it
            // is tried again.
            if let Err(e) = deliver(&app, delivery).await {
                tracing::warn!(delivery_id = %id, error = %e.public_message(), "a webhook delivery failed");
            }
            drop(slot);
        });
    }
    Ok(count)
}

/// Sends delivery `id` now if it is due, and waits for its outcome (a test delivery, a replay).
pub async fn deliver_now(app: &AppState, id: Uuid) -> AppResult<()> {
    let now = app.clock.now();
    let claimed = {
        let mut conn = app.pool.get().await?;
        repo::claim_due(&mut conn, now, after(now, CLAIM), 1, Some(id)).await?
    };
    for delivery in claimed {
        deliver(app, delivery).await?;
    }
    Ok(())
}

/// The secrets that sign now: the endpoint's, and a rotated one until its overlap ends.
fn secrets_of(
    app: &AppState,
    endpoint: &EndpointRow,
    now: DateTime<Utc>,
) -> AppResult<Vec<String>> {
    let key = app.keys.encryption_key.expose();
    let associated = format!("webhook:{}", endpoint.id);
    let mut secrets = vec![crate::tools::crypto::decrypt(
        key,
        &associated,
        &endpoint.secret_nonce,
        &endpoint.secret_ciphertext,
    )?];
    if let (Some(nonce), Some(ciphertext), Some(until)) = (
        &endpoint.previous_nonce,
        &endpoint.previous_ciphertext,
        endpoint.previous_until,
    ) && until > now
    {
        secrets.push(crate::tools::crypto::decrypt(
            key,
            &associated,
            nonce,
            ciphertext,
        )?);
    }
    Ok(secrets)
}

/// What an attempt came to: the status (none when no answer came) and the start of the answer, or why
/// there was none.
struct Answer {
    status: Option<u16>,
    excerpt: String,
}

async fn post(app: &AppState, endpoint: &EndpointRow, delivery: &DeliveryRow) -> AppResult<Answer> {
    if let Some(why) = crate::gateway::destination::literal_refused(
        &endpoint.url,
        app.config.gateway.allow_private_upstreams,
    ) {
        return Ok(Answer {
            status: None,
            excerpt: format!("not sent: {why}"),
        });
    }
    let now = app.clock.now();
    let id = delivery.message_id.to_string();
    // The receiver compares it with its own clock: the time of sending, whatever billing's clock says.
    let timestamp = Utc::now().timestamp();
    let signature = signing::header(
        &secrets_of(app, endpoint, now)?,
        &id,
        timestamp,
        &delivery.body,
    );
    let sent = app
        .http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone())
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            let why = if e.is_timeout() {
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                "the request failed".to_owned()
            };
            return Ok(Answer {
                status: None,
                excerpt: why,
            });
        }
    };
    let status = response.status().as_u16();
    let mut start = Vec::new();
    while start.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    start.truncate(EXCERPT_BYTES);
    Ok(Answer {
        status: Some(status),
        excerpt: String::from_utf8_lossy(&start).into_owned(),
    })
}

async fn deliver(app: &AppState, delivery: DeliveryRow) -> AppResult<()> {
    let endpoint = {
        let mut conn = app.pool.get().await?;
        repo::endpoint(&mut conn, delivery.endpoint_id).await?
    };
    // A deleted endpoint's deliveries went with it.
    let Some(endpoint) = endpoint else {
        return Ok(());
    };
    let started = Instant::now();
    let answer = if endpoint.enabled {
        post(app, &endpoint, &delivery).await?
    } else {
        Answer {
            status: None,
            excerpt: "not sent: the endpoint is disabled".into(),
        }
    };
    let now = app.clock.now();
    let attempt = AttemptRow {
        id: Uuid::now_v7(),
        delivery_id: delivery.id,
        attempted_at: now,
        status_code: answer.status.map(i32::from),
        latency_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
        excerpt: answer.excerpt.clone(),
    };
    let delivered = answer.status.is_some_and(|s| (200..300).contains(&s));
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let Some(mut endpoint) = repo::lock_endpoint(conn, delivery.endpoint_id).await? else {
            return Ok(());
        };
        if delivered {
            repo::finish_attempt(conn, &attempt, DeliveryStatus::Delivered, now, None).await?;
            if endpoint.failing_since.is_some() {
                endpoint.failing_since = None;
                repo::save_endpoint(conn, &endpoint).await?;
            }
            metrics::counter!("webhook_deliveries_total", "outcome" => "delivered").increment(1);
            return Ok(());
        }
        let why = match answer.status {
            Some(status) => format!("HTTP {status}"),
            None => answer.excerpt.clone(),
        };
        let pause = usize::try_from(delivery.attempts - 1)
            .ok()
            .and_then(|index| RETRY_AFTER.get(index));
        let status = match pause {
            Some(_) if endpoint.enabled => DeliveryStatus::Pending,
            _ => DeliveryStatus::Failed,
        };
        let next = after(now, pause.copied().unwrap_or_default());
        repo::finish_attempt(conn, &attempt, status, next, Some(&why)).await?;
        metrics::counter!("webhook_deliveries_total", "outcome" => "failed_attempt").increment(1);
        if endpoint.enabled {
            let since = *endpoint.failing_since.get_or_insert(now);
            if now >= after(since, DISABLE_AFTER) {
                disable_in(conn, &mut endpoint, now).await?;
            }
            repo::save_endpoint(conn, &endpoint).await?;
        }
        Ok(())
    })
    .await
}

/// Disables an endpoint that failed for a day, gives up its pending deliveries and tells its owner.
async fn disable_in(
    conn: &mut AsyncPgConnection,
    endpoint: &mut EndpointRow,
    now: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    let reason = "No delivery succeeded for a day.";
    endpoint.enabled = false;
    endpoint.disabled_reason = Some(reason.into());
    endpoint.updated_at = now;
    repo::fail_pending_of(conn, endpoint.id, "the endpoint was disabled").await?;
    tracing::warn!(endpoint_id = %endpoint.id, "webhook endpoint disabled after a day of failures");
    crate::notifications::record::record_in(
        conn,
        EventType::WebhookEndpointDisabled,
        Some(endpoint.user_id),
        json!({ "endpointId": endpoint.id, "url": endpoint.url, "reason": reason }),
    )
    .await
}

/// Delivers due deliveries at least every [`POLL_EVERY`] until the task is dropped.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    let pace = crate::worker::Pace {
        name: "webhooks",
        every: POLL_EVERY,
        batch: usize::try_from(BATCH).unwrap_or(usize::MAX),
        wake: None,
    };
    crate::worker::spawn(app, pace, |app| async move { start_due(&app).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_last_about_a_day_and_a_quarter() {
        let total: Duration = RETRY_AFTER.iter().sum();
        assert_eq!(
            total.as_secs(),
            5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 36_000
        );
        assert!(total > DISABLE_AFTER);
    }
}
