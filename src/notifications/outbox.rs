//! The event outbox's dispatcher: it turns each event recorded by `record` into what its recipients
//! chose (in-app notifications, mails, webhook deliveries) in one transaction, so an event is fanned out
//! exactly once however many instances run.
//!
//! Dispatchers in every instance lock undispatched events with `FOR UPDATE SKIP LOCKED`; a crash before
//! the commit leaves the event undispatched for the next look. Mails and webhook deliveries then have
//! their own retries (`mail::outbox`, `webhooks::delivery`).

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::describe::describe;
use super::model::{Channels, EventType, NotificationRow, OutboxEventRow};
use super::repo;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::mail::transport::{OutgoingMail, action_mail};
use crate::users::model::{UserId, UserRow, UserStatus};

/// How often a dispatcher looks for events when nothing woke it.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// Events dispatched per transaction.
const BATCH: i64 = 50;

/// Dispatches the undispatched events (a batch at a time); how many.
pub async fn dispatch_pending(app: &AppState) -> AppResult<usize> {
    let mut conn = app.pool.get().await?;
    let (count, mailed) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let events = repo::lock_undispatched(conn, BATCH).await?;
            let mut mailed = false;
            for event in &events {
                mailed |= fan_out(conn, app, event).await?;
            }
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            repo::mark_dispatched(conn, &ids, Utc::now()).await?;
            Ok((events.len(), mailed))
        })
        .await?;
    if mailed {
        app.mailer.wake();
    }
    Ok(count)
}

/// Hands `event` to its recipients' channels; whether a mail was queued.
async fn fan_out(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    event: &OutboxEventRow,
) -> AppResult<bool> {
    let Some(kind) = EventType::parse_db(&event.kind) else {
        tracing::warn!(event_id = %event.id, kind = %event.kind, "an event of an unknown type is dropped");
        return Ok(false);
    };
    let recipients = match event.user_id {
        Some(user) => vec![user],
        None => crate::users::repo::active_admin_ids(conn).await?,
    };
    let (title, body) = describe(kind, &event.payload);
    let mut mailed = false;
    for recipient in recipients {
        let Some(user) = crate::users::repo::find_by_id(conn, UserId(recipient)).await? else {
            continue;
        };
        if user.deleted_at.is_some() {
            continue;
        }
        let channels = channels_for(conn, recipient, kind).await?.enforced(kind);
        if channels.in_app {
            let notification = NotificationRow {
                id: Uuid::now_v7(),
                user_id: recipient,
                event_id: event.id,
                kind,
                title: title.clone(),
                body: body.clone(),
                payload: event.payload.clone(),
                created_at: Utc::now(),
                read_at: None,
            };
            repo::insert_notification(conn, &notification).await?;
        }
        if channels.email && user.status == UserStatus::Active {
            let mail = notice_mail(app, &user, &title, &body);
            crate::mail::outbox::enqueue_in(conn, app, Some(recipient), kind.as_db(), &mail)
                .await?;
            mailed = true;
        }
        if channels.webhook {
            crate::webhooks::delivery::enqueue_in(conn, app, recipient, kind, event).await?;
        }
    }
    Ok(mailed)
}

/// The channels `user` chose for `event`, or its defaults.
pub async fn channels_for(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    event: EventType,
) -> diesel::QueryResult<Channels> {
    let chosen = repo::channels_of(conn, user).await?;
    Ok(Channels::chosen(&chosen, event))
}

fn notice_mail(app: &AppState, user: &UserRow, title: &str, body: &str) -> OutgoingMail {
    action_mail(
        &user.email,
        title,
        &user.name,
        body,
        "Open Joyfull Hub",
        &app.mailer.public_url,
        "You get this mail because of your notification preferences; security notices are always sent.",
    )
}

/// Dispatches events every [`POLL_EVERY`] until the task is dropped.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    let pace = crate::worker::Pace {
        name: "events",
        every: POLL_EVERY,
        batch: usize::try_from(BATCH).unwrap_or(usize::MAX),
        wake: None,
    };
    crate::worker::spawn(app, pace, |app| async move { dispatch_pending(&app).await })
}
