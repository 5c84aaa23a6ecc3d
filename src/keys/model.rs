use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// Prefix of API keys (so scanners can find leaked ones).
pub const API_KEY_PREFIX: &str = "jhk_";

/// An API key's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyId(pub Uuid);

crate::text_enum! {
    /// What an API key may do. A signed-in session may do everything its role allows.
    #[derive(async_graphql::Enum)]
    #[graphql(name = "ApiKeyScope")]
    pub enum Scope {
        /// Invoke tools.
        Invoke => "INVOKE",
        /// Read the account's data: profile, subscription, keys and usage.
        Read => "READ",
        /// Manage the account: profile (not email or password), keys and plan.
        Manage => "MANAGE",
        /// Administrators' fields; only an administrator can grant it, from a signed-in session.
        Admin => "ADMIN",
    }
}

/// The scopes a new key gets unless its creator asks otherwise.
pub const DEFAULT_SCOPES: [Scope; 2] = [Scope::Invoke, Scope::Read];

/// A set of scopes (small and `Copy`, so a caller carries it freely).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    fn bit(scope: Scope) -> u8 {
        match scope {
            Scope::Invoke => 1,
            Scope::Read => 2,
            Scope::Manage => 4,
            Scope::Admin => 8,
        }
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Self::bit(scope) != 0
    }

    /// Whether every scope of `other` is in this set.
    pub fn covers(self, other: Scopes) -> bool {
        other.0 & !self.0 == 0
    }

    /// The scopes in a fixed order (invoke, read, manage, admin).
    pub fn to_vec(self) -> Vec<Scope> {
        [Scope::Invoke, Scope::Read, Scope::Manage, Scope::Admin]
            .into_iter()
            .filter(|s| self.contains(*s))
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(scopes: I) -> Self {
        Self(scopes.into_iter().fold(0, |bits, s| bits | Self::bit(s)))
    }
}

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
    pub scopes: Vec<Scope>,
    /// The key's own request rate, narrowing the plan's.
    pub requests_per_minute: Option<i32>,
    /// The most tokens the key may spend in its owner's billing period.
    pub token_budget: Option<i64>,
}

impl ApiKeyRow {
    pub fn scopes(&self) -> Scopes {
        self.scopes.iter().copied().collect()
    }

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
    pub scopes: Vec<Scope>,
    pub requests_per_minute: Option<i32>,
    pub token_budget: Option<i64>,
}

/// A key's own limits; `None` leaves that dimension to the plan alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<i32>,
    pub token_budget: Option<i64>,
}

impl KeyLimits {
    pub fn any(&self) -> bool {
        self.requests_per_minute.is_some() || self.token_budget.is_some()
    }
}
