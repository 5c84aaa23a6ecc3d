//! Rows of the sessions and mail-token tables.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// A row of `refresh_tokens`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub struct RefreshTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::refresh_tokens)]
pub struct NewRefreshToken<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub token_hash: &'a [u8],
    pub expires_at: DateTime<Utc>,
}

crate::text_enum! {
    /// Why a mail token was sent.
    pub enum MailPurpose {
        /// Confirm the address given at registration.
        VerifyEmail => "VERIFY_EMAIL",
        /// Confirm a new address before it replaces the old one.
        ChangeEmail => "CHANGE_EMAIL",
        /// Choose a new password.
        ResetPassword => "RESET_PASSWORD",
        /// Undo an email change (sent to the old address).
        CancelEmailChange => "CANCEL_EMAIL_CHANGE",
    }
}

/// A row of `email_tokens`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::email_tokens, check_for_backend(diesel::pg::Pg))]
pub struct EmailTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub purpose: MailPurpose,
    pub email: String,
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::email_tokens)]
pub struct NewEmailToken<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub purpose: MailPurpose,
    pub email: &'a str,
    pub token_hash: &'a [u8],
    pub expires_at: DateTime<Utc>,
}
