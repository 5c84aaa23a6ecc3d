//! Plan, subscription, event and reservation rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// A subscription's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub Uuid);

crate::text_enum! {
    /// A plan's tier.
    #[derive(async_graphql::Enum)]
    pub enum PlanTier {
        Free => "FREE",
        Pro => "PRO",
        Enterprise => "ENTERPRISE",
    }
}

crate::text_enum! {
    /// Where a subscription stands.
    #[derive(async_graphql::Enum)]
    pub enum SubscriptionStatus {
        /// Running, renews at the period end.
        Active => "ACTIVE",
        /// A payment failed: access continues until the grace period ends, then it expires unless the
        /// provider reports a payment first.
        PastDue => "PAST_DUE",
        /// Cancelled: access continues until the period end, then it expires (unless resumed).
        Cancelled => "CANCELLED",
        /// Over; the user has no plan.
        Expired => "EXPIRED",
        /// Never stored: the answer to a `subscribe` that waits for payment at the provider.
        Incomplete => "INCOMPLETE",
    }
}

crate::text_enum! {
    /// Who pays for a subscription's plan.
    #[derive(async_graphql::Enum)]
    pub enum PaidBy {
        /// Nobody: a free plan.
        None => "NONE",
        /// The development provider, which approves every charge.
        Manual => "MANUAL",
        /// A subscription at the payment provider.
        Provider => "PROVIDER",
        /// An administrator's grant (support, or a company paying by invoice).
        Grant => "GRANT",
    }
}

crate::text_enum! {
    /// What happened to a subscription.
    pub enum EventKind {
        Created => "CREATED",
        Upgraded => "UPGRADED",
        DowngradeScheduled => "DOWNGRADE_SCHEDULED",
        DowngradeCancelled => "DOWNGRADE_CANCELLED",
        Cancelled => "CANCELLED",
        Resumed => "RESUMED",
        Renewed => "RENEWED",
        Expired => "EXPIRED",
        PaymentFailed => "PAYMENT_FAILED",
        PaymentRecovered => "PAYMENT_RECOVERED",
        Granted => "GRANTED",
    }
}

/// A row of `plans`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::plans, check_for_backend(diesel::pg::Pg))]
pub struct PlanRow {
    pub tier: PlanTier,
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
    pub tier: PlanTier,
    pub status: SubscriptionStatus,
    pub billing_anchor: DateTime<Utc>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub scheduled_tier: Option<PlanTier>,
    pub tokens_used: i64,
    pub tokens_reserved: i64,
    pub created_at: DateTime<Utc>,
    pub paid_by: PaidBy,
    pub provider_subscription_id: Option<String>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub provider_event_at: Option<DateTime<Utc>>,
}

impl SubscriptionRow {
    pub fn status(&self) -> SubscriptionStatus {
        self.status
    }

    /// Whether a boundary passed by `now` changes the row: its period ended, or its grace did.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        now >= self.current_period_end
            || (self.status == SubscriptionStatus::PastDue
                && self.grace_ends_at.is_some_and(|grace| now >= grace))
    }
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::subscriptions)]
pub struct NewSubscription {
    pub id: Uuid,
    pub user_id: Uuid,
    pub tier: PlanTier,
    pub status: SubscriptionStatus,
    pub billing_anchor: DateTime<Utc>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub paid_by: PaidBy,
    pub provider_subscription_id: Option<String>,
    pub provider_event_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::subscription_events)]
pub struct NewEvent {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub user_id: Uuid,
    pub kind: EventKind,
    pub from_tier: Option<PlanTier>,
    pub to_tier: Option<PlanTier>,
    pub occurred_at: DateTime<Utc>,
}

/// A row of `subscription_events`.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::subscription_events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub kind: EventKind,
    pub from_tier: Option<PlanTier>,
    pub to_tier: Option<PlanTier>,
    pub occurred_at: DateTime<Utc>,
}

/// Tokens set aside for one call in flight. Settle or release it exactly once. `id` names the call's own
/// row, or the slice it drew `tokens` from (`billing::slices`).
#[derive(Queryable, Selectable, Debug, Clone, Copy, PartialEq, Eq)]
#[diesel(table_name = crate::db::schema::quota_reservations, check_for_backend(diesel::pg::Pg))]
pub struct Reservation {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub tokens: i64,
}

impl Reservation {
    /// What a call that no limit constrains holds: no reservation row, only the subscription its
    /// usage is counted to.
    pub fn unheld(subscription_id: Uuid) -> Self {
        Self {
            id: Uuid::nil(),
            subscription_id,
            tokens: 0,
        }
    }

    /// Whether a reservation row stands behind it (to draw on when the call is settled).
    pub fn is_held(&self) -> bool {
        !self.id.is_nil()
    }
}

/// Current subscriptions of one tier and status, with the plan's price.
#[derive(Debug, Clone, QueryableByName)]
pub struct TierCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub tier: PlanTier,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: SubscriptionStatus,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub subscriptions: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub price_cents: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub currency: String,
    /// Whether these subscriptions pay for their plan now: active, paid through the provider or the
    /// manual one (not granted, not past due, not cancelled).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub paying: bool,
}

/// What a user's current subscription entitles them to, as the instances cache it (`cache.rs`) to let
/// calls that no token limit or rate constrains skip the reservation (`billing::entitlement`).
#[derive(Debug, Clone)]
pub struct Entitlement {
    pub subscription_id: Uuid,
    pub tier: PlanTier,
    /// The tiers the plan reaches (its own and those ranked below it).
    pub reaches: Vec<PlanTier>,
    /// Until when it runs: the period's end, or a payment's grace if that ends first.
    pub runs_until: DateTime<Utc>,
    /// The plan has no token limit, and no request rate that is enforced.
    pub unlimited: bool,
    /// The plan has a token limit.
    pub token_limited: bool,
    /// Which load this is: every load has its own, so a slice (`billing::slices`) leased under one
    /// ends when a change to the subscription or its plan has the entitlement loaded again.
    pub loaded: u64,
}

/// Where a subscription's request rate stands after a request (see `reserve/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub requests_per_minute: u32,
    /// Requests that may follow at once.
    pub burst_left: u32,
    /// Until the whole burst is available again.
    pub full_in: std::time::Duration,
}

/// A slice (`billing::slices`) is drawn on for at most this long after its lease, on billing's
/// clock; its reservation row outlives its request's lease by as much.
pub const SLICE_DRAWING: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// What a slice holds unspent, to give back: tokens (to its row and the reserved counter) and the
/// time its unspent requests moved the subscription's pace on.
#[derive(Debug, Clone, PartialEq)]
pub struct UnspentSlice {
    /// The reservation row holding the slice.
    pub row: Uuid,
    pub subscription_id: Uuid,
    pub tokens: i64,
    pub pace_ms: f64,
}
