//! The mail outbox: queueing a message with the change that causes it, and delivering what is due.
//!
//! - `enqueue_in` writes the message inside the caller's transaction; the caller wakes this instance's
//!   worker after the commit (`Mailer::wake`), and workers elsewhere find it within [`POLL_EVERY`].
//! - A worker claims due messages with `FOR UPDATE SKIP LOCKED`, so two instances never take the same
//!   message at once. The messages of a claim are sent together, and a claim holds them for [`CLAIM`]
//!   (four times as long as an SMTP exchange may take): if the worker dies mid-send, another retries
//!   after that. A message the server took but whose success
//!   was not recorded is sent again with the same `Message-ID`, so the retry is recognisably the same mail.
//! - A failed attempt is retried after 15 s, 30 s, 1 min… (doubling, at most an hour apart) for
//!   [`RETRY_FOR`]; a permanent refusal (an unknown mailbox, say) is not retried.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::model::{MailRow, MailStatus, NewMail};
use super::repo;
use super::transport::{OutgoingMail, SMTP_TIMEOUT};
use crate::app::AppState;
use crate::clock::after;
use crate::error::AppResult;

/// How often a worker looks for due messages when nothing woke it.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a claimed message is held by its worker.
const CLAIM: Duration = Duration::from_secs(SMTP_TIMEOUT.as_secs() * 4);
/// How long a failing message keeps being retried.
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
/// Messages claimed at a time.
const BATCH: i64 = 20;
/// How long the log keeps a message once it is sent or given up.
const LOG_KEPT_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Queues `mail` inside the caller's transaction; returns its id (also its `Message-ID`).
pub async fn enqueue_in(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: Option<Uuid>,
    kind: &str,
    mail: &OutgoingMail,
) -> diesel::QueryResult<Uuid> {
    let id = Uuid::now_v7();
    let now = app.clock.now();
    repo::insert(
        conn,
        &NewMail {
            id,
            user_id: user,
            kind,
            to_address: &mail.to,
            subject: &mail.subject,
            text_body: Some(&mail.text),
            html_body: Some(&mail.html),
            status: MailStatus::Pending,
            next_attempt_at: now,
            created_at: now,
        },
    )
    .await?;
    Ok(id)
}

/// The pause after the `attempts`-th failed attempt.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(8);
    Duration::from_secs(15 * 2u64.pow(doublings)).min(Duration::from_secs(3600))
}

/// Sends the messages due now; how many were claimed.
pub async fn deliver_due(app: &AppState) -> AppResult<usize> {
    let now = app.clock.now();
    let claimed = {
        let mut conn = app.pool.get().await?;
        repo::claim_due(&mut conn, now, after(now, CLAIM), BATCH).await?
    };
    let count = claimed.len();
    // Sent together: a slow exchange holds up no other, and every claimed message is finished well
    // within its claim (an exchange takes at most SMTP_TIMEOUT). One whose outcome cannot be recorded is
    // logged; its claim runs out and it is sent again (same Message-ID).
    let sent = claimed.into_iter().map(|mail| async move {
        let id = mail.id;
        if let Err(e) = deliver(app, mail).await {
            tracing::warn!(mail_id = %id, error = %e.public_message(), "recording a mail's outcome failed");
        }
    });
    async_graphql::futures_util::future::join_all(sent).await;
    Ok(count)
}

async fn deliver(app: &AppState, row: MailRow) -> AppResult<()> {
    let mail = OutgoingMail {
        to: row.to_address.clone(),
        subject: row.subject.clone(),
        text: row.text_body.clone().unwrap_or_default(),
        html: row.html_body.clone().unwrap_or_default(),
    };
    let sent = app.mailer.send(row.id, &mail).await;
    let now = app.clock.now();
    let mut conn = app.pool.get().await?;
    match sent {
        Ok(()) => {
            repo::mark_sent(&mut conn, row.id, now).await?;
            metrics::counter!("mail_sent_total", "kind" => row.kind).increment(1);
        }
        Err(failure) => {
            let retry_at = after(now, backoff(row.attempts));
            let out_of_time = retry_at > after(row.created_at, RETRY_FOR);
            if failure.permanent || out_of_time {
                tracing::error!(mail_id = %row.id, kind = %row.kind, attempts = row.attempts, error = %failure.detail, "mail given up");
                repo::give_up(&mut conn, row.id, &failure.detail).await?;
                metrics::counter!("mail_failed_total", "kind" => row.kind).increment(1);
            } else {
                tracing::warn!(mail_id = %row.id, kind = %row.kind, attempts = row.attempts, error = %failure.detail, %retry_at, "mail not sent; retrying later");
                repo::retry_later(&mut conn, row.id, retry_at, &failure.detail).await?;
            }
        }
    }
    Ok(())
}

/// Delivers due messages whenever woken, and at least every [`POLL_EVERY`], until the task is dropped.
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    let pace = crate::worker::Pace {
        name: "mail",
        every: POLL_EVERY,
        batch: usize::try_from(BATCH).unwrap_or(usize::MAX),
        wake: Some(app.mailer.wakes()),
    };
    crate::worker::spawn(app, pace, |app| async move { deliver_due(&app).await })
}

/// One page of the delivery log, newest first, and whether more follow.
pub async fn page(
    app: &AppState,
    status: Option<MailStatus>,
    after: Option<(DateTime<Utc>, Uuid)>,
    first: i64,
) -> AppResult<(Vec<MailRow>, bool)> {
    let mut conn = app.pool.get().await?;
    let rows = repo::page(&mut conn, status, after, first + 1).await?;
    Ok(crate::db::one_page(rows, first))
}

/// Drops the log of messages finished more than [`LOG_KEPT_FOR`] ago (the sweeper calls it).
pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> AppResult<()> {
    let mut conn = app.pool.get().await?;
    let before = now - chrono::Duration::from_std(LOG_KEPT_FOR).unwrap_or_default();
    repo::delete_finished_before(&mut conn, before).await?;
    Ok(())
}

/// Forgets a user's messages inside the caller's transaction (the account is being deleted).
pub async fn forget_user_in(conn: &mut AsyncPgConnection, user: Uuid) -> diesel::QueryResult<()> {
    repo::delete_for_user(conn, user).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_15_seconds_up_to_an_hour_and_last_about_a_day() {
        let pauses: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(pauses, [15, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let retries_in_a_day = (1..)
            .scan(0u64, |spent, n| {
                *spent += backoff(n).as_secs();
                (*spent <= RETRY_FOR.as_secs()).then_some(n)
            })
            .count();
        assert_eq!(retries_in_a_day, 30);
    }
}
