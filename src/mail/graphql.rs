use async_graphql::{ID, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{MailRow, MailStatus};

/// One message of the mail log (its body is not kept once it is sent or given up).
#[derive(SimpleObject)]
pub struct MailDelivery {
    pub id: ID,
    /// The user it was written for; null when none.
    pub user_id: Option<ID>,
    /// What it is about, e.g. `VERIFY_EMAIL`, `RESET_PASSWORD`, `EMAIL_CHANGE_NOTICE`.
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub status: MailStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When a pending message is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<MailRow> for MailDelivery {
    fn from(row: MailRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            user_id: row.user_id.map(|id| ID(id.to_string())),
            kind: row.kind,
            to: row.to_address,
            subject: row.subject,
            next_attempt_at: (row.status == MailStatus::Pending).then_some(row.next_attempt_at),
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
            sent_at: row.sent_at,
        }
    }
}
