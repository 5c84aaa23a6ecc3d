//! Plan, subscription, event and reservation rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// A plan's tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum PlanTier {
    Free,
    Pro,
    Enterprise,
}

impl PlanTier {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Free => "FREE",
            Self::Pro => "PRO",
            Self::Enterprise => "ENTERPRISE",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "FREE" => Some(Self::Free),
            "PRO" => Some(Self::Pro),
            "ENTERPRISE" => Some(Self::Enterprise),
            _ => None,
        }
    }
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum SubscriptionStatus {
    /// Running, renews at the period end.
    Active,
    /// Cancelled: access continues until the period end, then it expires (unless resumed).
    Cancelled,
    /// Over; the user has no plan.
    Expired,
}

impl SubscriptionStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn from_db(value: &str) -> Self {
        match value {
            "CANCELLED" => Self::Cancelled,
            "EXPIRED" => Self::Expired,
            _ => Self::Active,
        }
    }
}

/// What happened to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Upgraded,
    DowngradeScheduled,
    DowngradeCancelled,
    Cancelled,
    Resumed,
    Renewed,
    Expired,
}

impl EventKind {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Upgraded => "UPGRADED",
            Self::DowngradeScheduled => "DOWNGRADE_SCHEDULED",
            Self::DowngradeCancelled => "DOWNGRADE_CANCELLED",
            Self::Cancelled => "CANCELLED",
            Self::Resumed => "RESUMED",
            Self::Renewed => "RENEWED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// A row of `plans`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::plans, check_for_backend(diesel::pg::Pg))]
pub struct PlanRow {
    pub tier: String,
    pub rank: i32,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub token_limit: Option<i64>,
    pub requests_per_minute: Option<i32>,
    pub features: serde_json::Value,
}

/// Changes to a plan; `None` leaves a column as it is.
#[derive(AsChangeset, Default)]
#[diesel(table_name = crate::db::schema::plans)]
pub struct PlanChanges {
    pub name: Option<String>,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
    /// `Some(None)` makes the plan unlimited.
    pub token_limit: Option<Option<i64>>,
    pub requests_per_minute: Option<Option<i32>>,
    pub features: Option<serde_json::Value>,
}

/// A row of `subscriptions`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::subscriptions, check_for_backend(diesel::pg::Pg))]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub tier: String,
    pub status: String,
    pub billing_anchor: DateTime<Utc>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub scheduled_tier: Option<String>,
    pub tokens_used: i64,
    pub tokens_reserved: i64,
    pub created_at: DateTime<Utc>,
}

impl SubscriptionRow {
    pub fn status(&self) -> SubscriptionStatus {
        SubscriptionStatus::from_db(&self.status)
    }
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::subscriptions)]
pub struct NewSubscription<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub tier: &'a str,
    pub status: &'a str,
    pub billing_anchor: DateTime<Utc>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::subscription_events)]
pub struct NewEvent<'a> {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub user_id: Uuid,
    pub kind: &'a str,
    pub from_tier: Option<&'a str>,
    pub to_tier: Option<&'a str>,
    pub occurred_at: DateTime<Utc>,
}

/// A row of `subscription_events`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::subscription_events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub kind: String,
    pub from_tier: Option<String>,
    pub to_tier: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// Tokens set aside for one call in flight. Settle or release it exactly once.
#[derive(Queryable, Selectable, Debug, Clone, Copy, PartialEq, Eq)]
#[diesel(table_name = crate::db::schema::quota_reservations, check_for_backend(diesel::pg::Pg))]
pub struct Reservation {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub tokens: i64,
}
