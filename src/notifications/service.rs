//! A user's notifications and notification channels.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::model::{ChannelRow, Channels, EventType, NotificationRow};
use super::repo;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::users::model::UserId;

/// How long notifications (read or not) and dispatched events are kept.
const KEPT_FOR: Duration = Duration::from_secs(90 * 86_400);

/// One page of the user's notifications, newest first, and whether more follow.
pub async fn page(
    app: &AppState,
    user: UserId,
    unread_only: bool,
    after: Option<(DateTime<Utc>, Uuid)>,
    first: i64,
) -> AppResult<(Vec<NotificationRow>, bool)> {
    let mut conn = app.pool.get().await?;
    let rows = repo::page(&mut conn, user.0, unread_only, after, first + 1).await?;
    Ok(crate::db::one_page(rows, first))
}

pub async fn unread_count(app: &AppState, user: UserId) -> AppResult<i64> {
    let mut conn = app.pool.get().await?;
    Ok(repo::unread_count(&mut conn, user.0).await?)
}

/// Marks the user's notifications read (those in `ids`, or all); how many were unread.
pub async fn mark_read(app: &AppState, user: UserId, ids: Option<&[Uuid]>) -> AppResult<usize> {
    let mut conn = app.pool.get().await?;
    Ok(repo::mark_read(&mut conn, user.0, ids, Utc::now()).await?)
}

/// Every type of event with the channels that carry it to the user (security notices as enforced).
pub async fn channels(app: &AppState, user: UserId) -> AppResult<Vec<(EventType, Channels)>> {
    let mut conn = app.pool.get().await?;
    let chosen = repo::channels_of(&mut conn, user.0).await?;
    Ok(EventType::ALL
        .iter()
        .map(|event| (*event, Channels::chosen(&chosen, *event).enforced(*event)))
        .collect())
}

/// A change of the channels of one type of event; `None` keeps a channel as it is.
pub struct ChannelChange {
    pub event: EventType,
    pub in_app: Option<bool>,
    pub email: Option<bool>,
    pub webhook: Option<bool>,
}

/// Applies `changes` (all or none). Switching the app or mail off for a security notice is refused,
/// naming the field (`notices[2].email`).
pub async fn set_channels(
    app: &AppState,
    user: UserId,
    changes: &[ChannelChange],
) -> AppResult<()> {
    for (index, change) in changes.iter().enumerate() {
        if change.event.is_security() {
            for (name, value) in [("inApp", change.in_app), ("email", change.email)] {
                if value == Some(false) {
                    return Err(AppError::bad_input(
                        format!("notices[{index}].{name}"),
                        format!(
                            "{} is a security notice: it always reaches the app and your mailbox.",
                            change.event
                        ),
                    ));
                }
            }
        }
    }
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let chosen = repo::channels_of(conn, user.0).await?;
        let mut rows = Vec::with_capacity(changes.len());
        for change in changes {
            let current = Channels::chosen(&chosen, change.event);
            rows.push(ChannelRow {
                user_id: user.0,
                kind: change.event,
                in_app: change.in_app.unwrap_or(current.in_app),
                email: change.email.unwrap_or(current.email),
                webhook: change.webhook.unwrap_or(current.webhook),
            });
        }
        if !rows.is_empty() {
            repo::save_channels(conn, &rows).await?;
        }
        Ok(())
    })
    .await
}

/// Drops notifications and dispatched events older than [`KEPT_FOR`] (the sweeper calls it).
pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> AppResult<()> {
    let mut conn = app.pool.get().await?;
    let before = now - chrono::Duration::from_std(KEPT_FOR).unwrap_or_default();
    repo::delete_before(&mut conn, before).await?;
    Ok(())
}

/// Forgets a user's notifications, channels and events inside the caller's transaction.
pub async fn forget_user_in(conn: &mut AsyncPgConnection, user: Uuid) -> diesel::QueryResult<()> {
    repo::delete_for_user(conn, user).await
}
