//! Queries on `outbox_events`, `notifications` and `notification_channels`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{ChannelRow, NewOutboxEvent, NotificationRow, OutboxEventRow};
use crate::db::schema::{notification_channels, notifications, outbox_events};

/// Records an event; one with a `dedupe_key` already recorded is not recorded again (0).
pub async fn insert_event(
    conn: &mut AsyncPgConnection,
    event: &NewOutboxEvent<'_>,
) -> QueryResult<usize> {
    diesel::insert_into(outbox_events::table)
        .values(event)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

/// Locks up to `limit` undispatched events, oldest first, skipping those another dispatcher holds (in
/// the caller's transaction).
pub async fn lock_undispatched(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<OutboxEventRow>> {
    outbox_events::table
        .filter(outbox_events::dispatched_at.is_null())
        .order(outbox_events::created_at)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(OutboxEventRow::as_select())
        .load(conn)
        .await
}

pub async fn mark_dispatched(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(outbox_events::table.filter(outbox_events::id.eq_any(ids)))
        .set(outbox_events::dispatched_at.eq(Some(now)))
        .execute(conn)
        .await
}

/// Stores a notification; the same event never notifies a user twice.
pub async fn insert_notification(
    conn: &mut AsyncPgConnection,
    row: &NotificationRow,
) -> QueryResult<usize> {
    diesel::insert_into(notifications::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

/// One page of a user's notifications, newest first, after the `(created_at, id)` cursor.
pub async fn page(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    unread_only: bool,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<NotificationRow>> {
    let mut query = notifications::table
        .filter(notifications::user_id.eq(user))
        .into_boxed();
    if unread_only {
        query = query.filter(notifications::read_at.is_null());
    }
    if let Some((at, id)) = after {
        query = query.filter(
            notifications::created_at
                .lt(at)
                .or(notifications::created_at
                    .eq(at)
                    .and(notifications::id.lt(id))),
        );
    }
    query
        .order((notifications::created_at.desc(), notifications::id.desc()))
        .limit(limit)
        .select(NotificationRow::as_select())
        .load(conn)
        .await
}

pub async fn unread_count(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<i64> {
    notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::read_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Marks a user's unread notifications read: those in `ids`, or all of them; how many changed.
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    ids: Option<&[Uuid]>,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let unread = notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::read_at.is_null());
    let read = notifications::read_at.eq(Some(now));
    match ids {
        Some(ids) => {
            diesel::update(unread.filter(notifications::id.eq_any(ids)))
                .set(read)
                .execute(conn)
                .await
        }
        None => diesel::update(unread).set(read).execute(conn).await,
    }
}

pub async fn channels_of(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<ChannelRow>> {
    notification_channels::table
        .filter(notification_channels::user_id.eq(user))
        .select(ChannelRow::as_select())
        .load(conn)
        .await
}

pub async fn save_channels(
    conn: &mut AsyncPgConnection,
    rows: &[ChannelRow],
) -> QueryResult<usize> {
    diesel::insert_into(notification_channels::table)
        .values(rows)
        .on_conflict((notification_channels::user_id, notification_channels::kind))
        .do_update()
        .set((
            notification_channels::in_app.eq(excluded(notification_channels::in_app)),
            notification_channels::email.eq(excluded(notification_channels::email)),
            notification_channels::webhook.eq(excluded(notification_channels::webhook)),
        ))
        .execute(conn)
        .await
}

/// Deletes notifications and dispatched events older than `before`.
pub async fn delete_before(conn: &mut AsyncPgConnection, before: DateTime<Utc>) -> QueryResult<()> {
    diesel::delete(notifications::table.filter(notifications::created_at.lt(before)))
        .execute(conn)
        .await?;
    diesel::delete(
        outbox_events::table
            .filter(outbox_events::dispatched_at.is_not_null())
            .filter(outbox_events::created_at.lt(before)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_for_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<()> {
    diesel::delete(notifications::table.filter(notifications::user_id.eq(user)))
        .execute(conn)
        .await?;
    diesel::delete(notification_channels::table.filter(notification_channels::user_id.eq(user)))
        .execute(conn)
        .await?;
    diesel::delete(outbox_events::table.filter(outbox_events::user_id.eq(user)))
        .execute(conn)
        .await?;
    Ok(())
}
