//! Queries on `plans`, `subscriptions`, `subscription_events` and `quota_reservations`.

use crate::db::cached::CachedExt;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{
    Entitlement, EventRow, NewEvent, NewSubscription, PaidBy, PlanChanges, PlanRow, PlanTier,
    Reservation, SubscriptionRow, SubscriptionStatus, TierCount,
};
use crate::db::compose::{Composed, Part};
use crate::db::schema::{
    payment_customers, payment_events, plans, quota_reservations, subscription_events,
    subscriptions,
};

pub async fn list_plans(conn: &mut AsyncPgConnection) -> QueryResult<Vec<PlanRow>> {
    plans::table
        .order(plans::rank)
        .select(PlanRow::as_select())
        .load(conn)
        .await
}

pub async fn find_plan(conn: &mut AsyncPgConnection, tier: PlanTier) -> QueryResult<PlanRow> {
    plans::table
        .find(tier)
        .select(PlanRow::as_select())
        .first(conn)
        .await
}

/// A plan, locked until the transaction ends.
pub async fn lock_plan(conn: &mut AsyncPgConnection, tier: PlanTier) -> QueryResult<PlanRow> {
    plans::table
        .find(tier)
        .select(PlanRow::as_select())
        .for_update()
        .first(conn)
        .await
}

pub async fn update_plan(
    conn: &mut AsyncPgConnection,
    tier: PlanTier,
    changes: &PlanChanges,
) -> QueryResult<PlanRow> {
    diesel::update(plans::table.find(tier))
        .set(changes)
        .returning(PlanRow::as_returning())
        .get_result(conn)
        .await
}

/// The current subscriptions of several users with their plans, in one query.
pub async fn current_with_plans(
    conn: &mut AsyncPgConnection,
    users: &[Uuid],
) -> QueryResult<Vec<(SubscriptionRow, PlanRow)>> {
    subscriptions::table
        .inner_join(plans::table)
        .filter(subscriptions::user_id.eq_any(users))
        .filter(subscriptions::status.ne(SubscriptionStatus::Expired))
        .select((SubscriptionRow::as_select(), PlanRow::as_select()))
        .load(conn)
        .await
}

/// The user's current subscription, locked for update until the transaction ends.
pub async fn lock_current_for_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::user_id.eq(user))
        .filter(subscriptions::status.ne(SubscriptionStatus::Expired))
        .select(SubscriptionRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn lock_by_id(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<SubscriptionRow> {
    subscriptions::table
        .find(id)
        .select(SubscriptionRow::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Subscriptions whose period ended by `now`, locked, skipping rows another instance is handling.
pub async fn lock_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::status.ne(SubscriptionStatus::Expired))
        .filter(
            subscriptions::current_period_end
                .le(now)
                .or(subscriptions::status
                    .eq(SubscriptionStatus::PastDue)
                    .and(subscriptions::grace_ends_at.le(now))),
        )
        .order(subscriptions::current_period_end)
        .limit(limit)
        .select(SubscriptionRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await
}

pub async fn insert_subscription(
    conn: &mut AsyncPgConnection,
    row: NewSubscription,
) -> QueryResult<SubscriptionRow> {
    diesel::insert_into(subscriptions::table)
        .values(row)
        .returning(SubscriptionRow::as_returning())
        .get_result(conn)
        .await
}

/// Every stateful column of a subscription, written back after a rule changed it.
#[derive(AsChangeset)]
#[diesel(table_name = crate::db::schema::subscriptions, treat_none_as_null = true)]
#[derive(Clone, Copy)]
pub struct SubscriptionState {
    pub tier: PlanTier,
    pub status: SubscriptionStatus,
    pub billing_anchor: DateTime<Utc>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub scheduled_tier: Option<PlanTier>,
    pub tokens_used: i64,
    pub paid_by: PaidBy,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub provider_event_at: Option<DateTime<Utc>>,
}

pub async fn save_state(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    state: SubscriptionState,
) -> QueryResult<SubscriptionRow> {
    diesel::update(subscriptions::table.find(id))
        .set(state)
        .returning(SubscriptionRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn insert_event(conn: &mut AsyncPgConnection, event: NewEvent) -> QueryResult<usize> {
    diesel::insert_into(subscription_events::table)
        .values(event)
        .execute(conn)
        .await
}

/// Moves `reserved` tokens out of the reserved counter and `used` into the used counter, in one update.
pub async fn settle_counters(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reserved: i64,
    used: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE subscriptions SET tokens_reserved = GREATEST(tokens_reserved - $2, 0), \
         tokens_used = tokens_used + $3 WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::BigInt, _>(reserved)
    .bind::<diesel::sql_types::BigInt, _>(used)
    .cached()
    .execute(conn)
    .await
}

/// The reservation statement (`reserve/`) for a batch with a request made by a key with limits of its
/// own, and for the others, which leave the keys' work out (most batches: it is a third cheaper).
const RESERVE_KEYED: &str = concat!(
    include_str!("reserve/head.sql"),
    include_str!("reserve/keyed.sql"),
    include_str!("reserve/pace.sql"),
    include_str!("reserve/keyed_counts.sql"),
    include_str!("reserve/answer.sql"),
);
const RESERVE_PLAIN: &str = concat!(
    include_str!("reserve/head.sql"),
    include_str!("reserve/plain.sql"),
    include_str!("reserve/pace.sql"),
    include_str!("reserve/plain_counts.sql"),
    include_str!("reserve/answer.sql"),
);

/// One request of [`reserve_batch`].
pub struct BatchReservation {
    pub id: Uuid,
    pub user: Uuid,
    pub tokens: i64,
    pub expires_at: DateTime<Utc>,
    pub min_tier: PlanTier,
    /// The API key making the call when it has limits of its own (else `None`).
    pub api_key: Option<Uuid>,
    /// Tokens and requests asked for a slice beyond the request's own (`billing::slices`).
    pub slice_tokens: i64,
    pub slice_requests: i32,
}

/// What [`reserve_batch`] decided for one request that reached a subscription.
#[derive(QueryableByName, Debug, Clone, Copy)]
pub struct Reserved {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub subscription_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub tier: PlanTier,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub granted: bool,
    /// The plan's rate; `None` when unlimited or not enforced (and then the fields below are too).
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub requests_per_minute: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub burst: Option<i32>,
    /// Requests that may follow at once.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub burst_left: Option<i32>,
    /// Milliseconds until the whole burst is available again.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub full_in_ms: Option<i64>,
    /// Set when the request was over the rate: milliseconds until one would be admitted.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub retry_in_ms: Option<i64>,
    /// The key's own rate, and the same three figures for it; `None` when the key has none.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub key_requests_per_minute: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub key_burst_left: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub key_full_in_ms: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub key_retry_in_ms: Option<i64>,
    /// The request was within the key's rate but over its token budget.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bool>)]
    pub key_over_budget: Option<bool>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub key_token_budget: Option<i64>,
    /// The key's budget left before this batch's requests.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub key_tokens_left: Option<i64>,
    /// The slice granted beyond the request's own tokens and the request itself.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub slice_tokens: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub slice_requests: i32,
}

/// Runs `reserve/` (what it grants is described there); returns a row for each request that
/// reached a subscription. `enforce_rates` applies the plans' request rates.
pub async fn reserve_batch(
    conn: &mut AsyncPgConnection,
    requests: &[BatchReservation],
    now: DateTime<Utc>,
    enforce_rates: bool,
) -> QueryResult<Vec<Reserved>> {
    use diesel::sql_types::{Array, BigInt, Bool, Text, Timestamptz, Uuid as SqlUuid};
    let statement = if requests.iter().any(|r| r.api_key.is_some()) {
        RESERVE_KEYED
    } else {
        RESERVE_PLAIN
    };
    diesel::sql_query(statement)
        .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.user).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(requests.iter().map(|r| r.tokens).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(requests.iter().map(|r| r.expires_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            requests
                .iter()
                .map(|r| r.min_tier.as_db())
                .collect::<Vec<_>>(),
        )
        .bind::<Timestamptz, _>(now)
        .bind::<Bool, _>(enforce_rates)
        .bind::<Array<diesel::sql_types::Nullable<SqlUuid>>, _>(
            requests.iter().map(|r| r.api_key).collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(requests.iter().map(|r| r.slice_tokens).collect::<Vec<_>>())
        .bind::<Array<diesel::sql_types::Integer>, _>(
            requests
                .iter()
                .map(|r| r.slice_requests)
                .collect::<Vec<_>>(),
        )
        .bind::<BigInt, _>(super::model::SLICE_DRAWING.num_milliseconds())
        .cached()
        .load(conn)
        .await
}

/// Drops every reservation of a subscription (it is ending at once).
pub async fn delete_reservations_of(
    conn: &mut AsyncPgConnection,
    subscription: Uuid,
) -> QueryResult<usize> {
    diesel::delete(
        quota_reservations::table.filter(quota_reservations::subscription_id.eq(subscription)),
    )
    .execute(conn)
    .await
}

/// Sets a subscription's reserved counter to zero (its reservations were dropped).
pub async fn clear_reserved(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::update(subscriptions::table.find(id))
        .set(subscriptions::tokens_reserved.eq(0))
        .execute(conn)
        .await
}

/// Removes the expired reservations (of one subscription, or all) and returns them.
pub async fn take_expired_reservations(
    conn: &mut AsyncPgConnection,
    subscription: Option<Uuid>,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Reservation>> {
    let mut query = diesel::delete(quota_reservations::table)
        .filter(quota_reservations::expires_at.le(now))
        .into_boxed();
    if let Some(id) = subscription {
        query = query.filter(quota_reservations::subscription_id.eq(id));
    }
    query
        .returning(Reservation::as_returning())
        .get_results(conn)
        .await
}

/// The settlement's parts (see `settlement`), in the order they are composed.
pub const SETTLE_LOCK: Part = Part::new(include_str!("settle_lock.sql"), 1);

/// Draws on the reservations that calls hold; [`SETTLE_NOTHING_HELD`] stands in when none does.
pub const SETTLE_HELD: Part = Part::new(include_str!("settle_held.sql"), 2);

pub const SETTLE_NOTHING_HELD: Part = Part::new(include_str!("settle_nothing_held.sql"), 0);

pub const SETTLE_CHARGE: Part = Part::new(include_str!("settle_charge.sql"), 2);

/// What keys with limits spent; it follows [`SETTLE_CHARGE`] after [`SETTLE_HELD`].
pub const SETTLE_KEYS: Part = Part::new(include_str!("settle_keys.sql"), 3);

/// Binds [`SETTLE_LOCK`]'s parameter: the subscriptions charged, in id order.
pub fn bind_settle_lock<'a>(query: Composed<'a>, subscriptions: Vec<Uuid>) -> Composed<'a> {
    query.bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(subscriptions)
}

/// Binds [`SETTLE_HELD`]'s parameters: the reservations drawn on, with the tokens of each draw.
pub fn bind_settle_held<'a>(
    query: Composed<'a>,
    reservations: Vec<Uuid>,
    drawn: Vec<i64>,
) -> Composed<'a> {
    query
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(reservations)
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(drawn)
}

/// Binds [`SETTLE_CHARGE`]'s parameters: subscriptions in id order with the tokens each used.
pub fn bind_settle_charge<'a>(
    query: Composed<'a>,
    used: &std::collections::BTreeMap<Uuid, i64>,
) -> Composed<'a> {
    query
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
            used.keys().copied().collect::<Vec<_>>(),
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(
            used.values().copied().collect::<Vec<_>>(),
        )
}

/// Binds [`SETTLE_KEYS`]'s parameters: API keys in id order with the tokens each used and its
/// subscription.
pub fn bind_settle_keys<'a>(
    query: Composed<'a>,
    keys: &std::collections::BTreeMap<Uuid, (i64, Uuid)>,
) -> Composed<'a> {
    query
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
            keys.keys().copied().collect::<Vec<_>>(),
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(
            keys.values().map(|(tokens, _)| *tokens).collect::<Vec<_>>(),
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
            keys.values().map(|(_, sid)| *sid).collect::<Vec<_>>(),
        )
}

/// Current subscriptions per tier and status with their plan's price, cheapest plan first.
pub async fn tier_counts(conn: &mut AsyncPgConnection) -> QueryResult<Vec<TierCount>> {
    diesel::sql_query(
        "SELECT s.tier, s.status, count(*) AS subscriptions, p.price_cents, p.currency, \
         (s.status = 'ACTIVE' AND s.paid_by IN ('PROVIDER', 'MANUAL')) AS paying \
         FROM subscriptions s JOIN plans p ON p.tier = s.tier WHERE s.status <> 'EXPIRED' \
         GROUP BY s.tier, s.status, paying, p.price_cents, p.currency, p.rank \
         ORDER BY p.rank, s.status",
    )
    .load(conn)
    .await
}

/// Every event of a user's subscriptions, oldest first.
pub async fn events_of_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<EventRow>> {
    subscription_events::table
        .filter(subscription_events::user_id.eq(user))
        .order((subscription_events::occurred_at, subscription_events::id))
        .select(EventRow::as_select())
        .load(conn)
        .await
}

/// Gives `key` a spending row for `user`'s current period (or from now, without a subscription),
/// starting from what the key's calls were charged in that period so far, unless it has one.
pub async fn open_key_spending(
    conn: &mut AsyncPgConnection,
    key: Uuid,
    user: Uuid,
) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO api_key_spending (api_key_id, period_start, tokens_used) \
         SELECT $1, p.start, (SELECT coalesce(sum(e.tokens_used), 0)::bigint FROM usage_events e \
                              WHERE e.api_key_id = $1 AND e.created_at >= p.start) \
         FROM (SELECT coalesce((SELECT current_period_start FROM subscriptions WHERE user_id = $2), \
                               now()) AS start) p \
         ON CONFLICT (api_key_id) DO NOTHING",
    )
    .bind::<diesel::sql_types::Uuid, _>(key)
    .bind::<diesel::sql_types::Uuid, _>(user)
    .execute(conn)
    .await
}

/// Tokens each of `user`'s keys was charged in the user's current period: a key with limits from its
/// spending row, any other from the usage log (keys absent spent none).
pub async fn key_tokens_this_period(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<KeySpent>> {
    diesel::sql_query(
        "SELECT k.id AS api_key_id, \
           CASE WHEN sp.api_key_id IS NULL \
                THEN (SELECT coalesce(sum(e.tokens_used), 0) FROM usage_events e \
                      WHERE e.api_key_id = k.id AND e.created_at >= s.current_period_start) \
                WHEN sp.period_start = s.current_period_start THEN sp.tokens_used \
                ELSE 0 END::bigint AS tokens_used \
         FROM api_keys k JOIN subscriptions s ON s.user_id = k.user_id \
         LEFT JOIN api_key_spending sp ON sp.api_key_id = k.id \
         WHERE k.user_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(user)
    .load(conn)
    .await
}

/// A key's tokens this period (see [`key_tokens_this_period`]).
#[derive(QueryableByName)]
pub struct KeySpent {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub api_key_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub tokens_used: i64,
}

/// The subscription billed by `provider_subscription`, locked until the transaction ends.
pub async fn lock_by_provider_subscription(
    conn: &mut AsyncPgConnection,
    provider_subscription: &str,
) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::provider_subscription_id.eq(provider_subscription))
        .filter(subscriptions::status.ne(SubscriptionStatus::Expired))
        .select(SubscriptionRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Names the provider subscription that bills a subscription (`None`: none does any more).
pub async fn set_provider_subscription(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    provider_subscription: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(subscriptions::table.find(id))
        .set(subscriptions::provider_subscription_id.eq(provider_subscription))
        .execute(conn)
        .await
}

/// The user's customer at the payment provider, if a checkout created one.
pub async fn customer_of(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Option<String>> {
    payment_customers::table
        .find(user)
        .select(payment_customers::customer_id)
        .first(conn)
        .await
        .optional()
}

/// Remembers the user's customer at the provider (the latest one wins).
pub async fn save_customer(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    customer: &str,
) -> QueryResult<usize> {
    diesel::insert_into(payment_customers::table)
        .values((
            payment_customers::user_id.eq(user),
            payment_customers::customer_id.eq(customer),
        ))
        .on_conflict(payment_customers::user_id)
        .do_update()
        .set(payment_customers::customer_id.eq(customer))
        .execute(conn)
        .await
}

/// Records a provider event by its id; `false` when it was recorded before (a redelivery).
pub async fn record_payment_event(
    conn: &mut AsyncPgConnection,
    id: &str,
    kind: &str,
    occurred_at: DateTime<Utc>,
    outcome: &str,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(payment_events::table)
        .values((
            payment_events::id.eq(id),
            payment_events::kind.eq(kind),
            payment_events::occurred_at.eq(occurred_at),
            payment_events::outcome.eq(outcome),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Sets a recorded provider event's outcome.
pub async fn set_payment_event_outcome(
    conn: &mut AsyncPgConnection,
    id: &str,
    outcome: &str,
) -> QueryResult<usize> {
    diesel::update(payment_events::table.find(id))
        .set(payment_events::outcome.eq(outcome))
        .execute(conn)
        .await
}

/// Sets the plan a subscription moves to at its period end.
pub async fn set_scheduled_tier(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    tier: Option<PlanTier>,
) -> QueryResult<usize> {
    diesel::update(subscriptions::table.find(id))
        .set(subscriptions::scheduled_tier.eq(tier))
        .execute(conn)
        .await
}

/// Active subscriptions of a paid plan whose period ends in `(now, until]` and that will renew.
pub async fn renewing_between(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<Vec<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::status.eq(SubscriptionStatus::Active))
        .filter(subscriptions::cancel_at_period_end.eq(false))
        .filter(subscriptions::tier.ne(PlanTier::Free))
        .filter(subscriptions::current_period_end.gt(now))
        .filter(subscriptions::current_period_end.le(until))
        .select(SubscriptionRow::as_select())
        .load(conn)
        .await
}

#[derive(QueryableByName)]
struct EntitlementRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    tier: PlanTier,
    #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Text>)]
    reaches: Vec<PlanTier>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    runs_until: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    unlimited: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    token_limited: bool,
}

/// What the user's current subscription entitles them to (see `Entitlement`); `None` without one.
pub async fn entitlement(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    enforce_rates: bool,
) -> QueryResult<Option<Entitlement>> {
    let row: Option<EntitlementRow> = diesel::sql_query(
        "SELECT s.id, s.tier, \
                array(SELECT q.tier FROM plans q WHERE q.rank <= p.rank ORDER BY q.rank) AS reaches, \
                LEAST(s.current_period_end, coalesce(s.grace_ends_at, 'infinity')) AS runs_until, \
                p.token_limit IS NULL AND (p.requests_per_minute IS NULL OR NOT $2) AS unlimited, \
                p.token_limit IS NOT NULL AS token_limited \
         FROM subscriptions s JOIN plans p ON p.tier = s.tier \
         WHERE s.user_id = $1 AND s.status <> 'EXPIRED'",
    )
    .bind::<diesel::sql_types::Uuid, _>(user)
    .bind::<diesel::sql_types::Bool, _>(enforce_rates)
    .get_result(conn)
    .await
    .optional()?;
    static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Ok(row.map(|row| Entitlement {
        subscription_id: row.id,
        tier: row.tier,
        reaches: row.reaches,
        runs_until: row.runs_until,
        unlimited: row.unlimited,
        token_limited: row.token_limited,
        loaded: LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    }))
}

/// Gives back what slices held unspent (`billing::slices`): their tokens leave their rows (a row left
/// with no draw in flight goes) and the reserved counters (a row that expired meanwhile returned them
/// already), and the time their unspent
/// requests moved each subscription's pace on is taken off it, never before now. Subscriptions are
/// locked first, in id order, as everything that touches reservations locks them; then the rows, whose
/// latest version decides (settlements draw on them concurrently).
pub async fn give_back_slices(
    conn: &mut AsyncPgConnection,
    owed: &[super::model::UnspentSlice],
) -> QueryResult<usize> {
    use diesel::sql_types::{Array, BigInt, Double, Uuid as SqlUuid};
    diesel::sql_query(
        "WITH back AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::float8[]) \
                       AS b(row_id, sid, tokens, ms)), \
              held AS (SELECT s.id FROM subscriptions s WHERE s.id = ANY($2::uuid[]) ORDER BY s.id FOR UPDATE), \
              rows AS (SELECT r.id, r.tokens FROM quota_reservations r \
                       WHERE r.id = ANY($1::uuid[]) AND (SELECT count(*) FROM held) >= 0 \
                       ORDER BY r.id FOR UPDATE), \
              emptied AS (DELETE FROM quota_reservations r USING rows w, back b \
                          WHERE r.id = w.id AND b.row_id = w.id AND b.tokens > 0 AND w.tokens = b.tokens \
                          RETURNING r.subscription_id, b.tokens), \
              reduced AS (UPDATE quota_reservations r SET tokens = w.tokens - b.tokens FROM rows w, back b \
                          WHERE r.id = w.id AND b.row_id = w.id AND b.tokens > 0 AND w.tokens > b.tokens \
                          RETURNING r.subscription_id, b.tokens), \
              returned AS (SELECT * FROM emptied UNION ALL SELECT * FROM reduced), \
              per_sub AS (SELECT h.id, \
                                 coalesce((SELECT sum(t.tokens) FROM returned t WHERE t.subscription_id = h.id), 0) AS tokens, \
                                 coalesce((SELECT sum(b.ms) FROM back b WHERE b.sid = h.id), 0) AS ms \
                          FROM held h) \
         UPDATE subscriptions s \
         SET tokens_reserved = GREATEST(s.tokens_reserved - p.tokens, 0), \
             request_rate_tat = CASE WHEN p.ms > 0 \
               THEN GREATEST(s.request_rate_tat - make_interval(secs => p.ms / 1000), statement_timestamp()) \
               ELSE s.request_rate_tat END \
         FROM per_sub p WHERE s.id = p.id",
    )
    .bind::<Array<SqlUuid>, _>(owed.iter().map(|o| o.row).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(owed.iter().map(|o| o.subscription_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(owed.iter().map(|o| o.tokens).collect::<Vec<_>>())
    .bind::<Array<Double>, _>(owed.iter().map(|o| o.pace_ms).collect::<Vec<_>>())
    .execute(conn)
    .await
}
