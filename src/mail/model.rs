//! Queued messages and where they stand.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

crate::text_enum! {
    /// Where a queued message stands.
    #[derive(async_graphql::Enum)]
    pub enum MailStatus {
        /// Waiting for its first or next attempt.
        Pending => "PENDING",
        /// Taken by the mail server.
        Sent => "SENT",
        /// Given up: refused for good, or still failing when its retries ran out.
        Failed => "FAILED",
    }
}

/// A row of `mail_outbox`.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = crate::db::schema::mail_outbox)]
pub struct MailRow {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    /// What the message is about, e.g. `VERIFY_EMAIL`, `RESET_PASSWORD`.
    pub kind: String,
    pub to_address: String,
    pub subject: String,
    /// Cleared once the message is sent or given up (links in it carry single-use tokens).
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub status: MailStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::mail_outbox)]
pub struct NewMail<'a> {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub kind: &'a str,
    pub to_address: &'a str,
    pub subject: &'a str,
    pub text_body: Option<&'a str>,
    pub html_body: Option<&'a str>,
    pub status: MailStatus,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}
