use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// Prefix of API keys (so scanners can find leaked ones).
pub const API_KEY_PREFIX: &str = "jhk_";

/// An API key's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyId(pub Uuid);

/// A row of `api_keys` (without the hash).
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ApiKeyRow {
    /// Neither revoked nor expired at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::api_keys)]
pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
    pub expires_at: Option<DateTime<Utc>>,
}
