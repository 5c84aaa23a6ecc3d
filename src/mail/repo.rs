//! Queries on `mail_outbox`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{MailRow, MailStatus, NewMail};
use crate::db::schema::mail_outbox;

pub async fn insert(conn: &mut AsyncPgConnection, mail: &NewMail<'_>) -> QueryResult<usize> {
    diesel::insert_into(mail_outbox::table)
        .values(mail)
        .execute(conn)
        .await
}

/// Claims up to `limit` due messages, oldest first, skipping those another worker holds: each is counted
/// as attempted and not due again before `until` (when a worker dies mid-send, another one retries then).
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<MailRow>> {
    diesel::sql_query(
        "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = $2 \
         WHERE id IN (SELECT id FROM mail_outbox \
                      WHERE status = 'PENDING' AND next_attempt_at <= $1 \
                      ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(until)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// Records that the mail server took message `id`; its bodies are cleared.
pub async fn mark_sent(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(mail_outbox::table.find(id))
        .set((
            mail_outbox::status.eq(MailStatus::Sent),
            mail_outbox::sent_at.eq(Some(now)),
            mail_outbox::last_error.eq(None::<String>),
            mail_outbox::text_body.eq(None::<String>),
            mail_outbox::html_body.eq(None::<String>),
        ))
        .execute(conn)
        .await
}

/// Records a failed attempt; the message is tried again at `next`.
pub async fn retry_later(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    next: DateTime<Utc>,
    error: &str,
) -> QueryResult<usize> {
    diesel::update(mail_outbox::table.find(id))
        .set((
            mail_outbox::next_attempt_at.eq(next),
            mail_outbox::last_error.eq(Some(error)),
        ))
        .execute(conn)
        .await
}

/// Gives message `id` up; its bodies are cleared.
pub async fn give_up(conn: &mut AsyncPgConnection, id: Uuid, error: &str) -> QueryResult<usize> {
    diesel::update(mail_outbox::table.find(id))
        .set((
            mail_outbox::status.eq(MailStatus::Failed),
            mail_outbox::last_error.eq(Some(error)),
            mail_outbox::text_body.eq(None::<String>),
            mail_outbox::html_body.eq(None::<String>),
        ))
        .execute(conn)
        .await
}

/// One page of the log, newest first, after the `(created_at, id)` cursor.
pub async fn page(
    conn: &mut AsyncPgConnection,
    status: Option<MailStatus>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<MailRow>> {
    let mut query = mail_outbox::table.into_boxed();
    if let Some(status) = status {
        query = query.filter(mail_outbox::status.eq(status));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            mail_outbox::created_at
                .lt(at)
                .or(mail_outbox::created_at.eq(at).and(mail_outbox::id.lt(id))),
        );
    }
    query
        .order((mail_outbox::created_at.desc(), mail_outbox::id.desc()))
        .limit(limit)
        .select(MailRow::as_select())
        .load(conn)
        .await
}

pub async fn delete_for_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::delete(mail_outbox::table.filter(mail_outbox::user_id.eq(user)))
        .execute(conn)
        .await
}

/// Deletes the log of messages sent or given up before `before`.
pub async fn delete_finished_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(
        mail_outbox::table
            .filter(mail_outbox::status.ne(MailStatus::Pending))
            .filter(mail_outbox::created_at.lt(before)),
    )
    .execute(conn)
    .await
}
