//! Queries on `plans`, `subscriptions`, `subscription_events` and `quota_reservations`.

use crate::db::cached::CachedExt;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{NewEvent, NewSubscription, PlanChanges, PlanRow, Reservation, SubscriptionRow};
use crate::db::compose::{Composed, Part};
use crate::db::schema::{plans, quota_reservations, subscription_events, subscriptions};

pub async fn list_plans(conn: &mut AsyncPgConnection) -> QueryResult<Vec<PlanRow>> {
    plans::table
        .order(plans::rank)
        .select(PlanRow::as_select())
        .load(conn)
        .await
}

pub async fn find_plan(conn: &mut AsyncPgConnection, tier: &str) -> QueryResult<PlanRow> {
    plans::table
        .find(tier)
        .select(PlanRow::as_select())
        .first(conn)
        .await
}

/// A plan, locked until the transaction ends.
pub async fn lock_plan(conn: &mut AsyncPgConnection, tier: &str) -> QueryResult<PlanRow> {
    plans::table
        .find(tier)
        .select(PlanRow::as_select())
        .for_update()
        .first(conn)
        .await
}

pub async fn update_plan(
    conn: &mut AsyncPgConnection,
    tier: &str,
    changes: &PlanChanges,
) -> QueryResult<PlanRow> {
    diesel::update(plans::table.find(tier))
        .set(changes)
        .returning(PlanRow::as_returning())
        .get_result(conn)
        .await
}

/// The user's current subscription with its plan, in one query.
pub async fn current_with_plan(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Option<(SubscriptionRow, PlanRow)>> {
    subscriptions::table
        .inner_join(plans::table)
        .filter(subscriptions::user_id.eq(user))
        .filter(subscriptions::status.ne("EXPIRED"))
        .select((SubscriptionRow::as_select(), PlanRow::as_select()))
        .first(conn)
        .await
        .optional()
}

/// The current subscriptions of several users with their plans, in one query.
pub async fn current_with_plans(
    conn: &mut AsyncPgConnection,
    users: &[Uuid],
) -> QueryResult<Vec<(SubscriptionRow, PlanRow)>> {
    subscriptions::table
        .inner_join(plans::table)
        .filter(subscriptions::user_id.eq_any(users))
        .filter(subscriptions::status.ne("EXPIRED"))
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
        .filter(subscriptions::status.ne("EXPIRED"))
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
        .filter(subscriptions::status.ne("EXPIRED"))
        .filter(subscriptions::current_period_end.le(now))
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
    row: NewSubscription<'_>,
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
pub struct SubscriptionState<'a> {
    pub tier: &'a str,
    pub status: &'a str,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub scheduled_tier: Option<&'a str>,
    pub tokens_used: i64,
}

pub async fn save_state(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    state: SubscriptionState<'_>,
) -> QueryResult<SubscriptionRow> {
    diesel::update(subscriptions::table.find(id))
        .set(state)
        .returning(SubscriptionRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn insert_event(conn: &mut AsyncPgConnection, event: NewEvent<'_>) -> QueryResult<usize> {
    diesel::insert_into(subscription_events::table)
        .values(event)
        .execute(conn)
        .await
}

/// Adds to the reserved counter (the caller holds the row lock and has checked the limit).
pub async fn add_reserved(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    tokens: i64,
) -> QueryResult<usize> {
    diesel::update(subscriptions::table.find(id))
        .set(subscriptions::tokens_reserved.eq(subscriptions::tokens_reserved + tokens))
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

#[derive(QueryableByName)]
pub struct Granted {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub subscription_id: Uuid,
    /// The subscription's plan tier.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub tier: String,
}

/// Reserves `tokens` from the user's current subscription in one statement (one round trip), when its
/// period is running and the tokens fit; expired reservations of the subscription are returned on the
/// way (also when the new reservation does not fit). `None` when anything is unusual (no subscription, an ended period, not enough tokens): the
/// caller then takes the slow path, which rolls periods forward and explains refusals. With
/// `min_tier`, a plan ranked below that tier is unusual too. The commit does not wait for the disk (a
/// reservation is a lease; see `service::reserve`).
pub async fn reserve_in_one_statement(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    reservation: Uuid,
    tokens: i64,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    min_tier: Option<&str>,
) -> QueryResult<Option<Granted>> {
    diesel::sql_query(
        "WITH lease AS (SELECT set_config('synchronous_commit', 'off', true)), \
         sub AS (SELECT s.id, s.tier, p.token_limit, s.tokens_used, s.tokens_reserved \
                 FROM subscriptions s JOIN plans p ON p.tier = s.tier \
                 WHERE s.user_id = $1 AND s.status <> 'EXPIRED' AND s.current_period_end > $4 \
                   AND ($6::text IS NULL OR p.rank >= (SELECT rank FROM plans WHERE tier = $6)) \
                 FOR UPDATE OF s), \
         expired AS (DELETE FROM quota_reservations r USING sub \
                     WHERE r.subscription_id = sub.id AND r.expires_at <= $4 RETURNING r.tokens), \
         left_over AS (SELECT sub.id, sub.tier, sub.token_limit, sub.tokens_used, \
                         GREATEST(sub.tokens_reserved - coalesce((SELECT sum(tokens) FROM expired), 0), 0)::bigint AS reserved \
                       FROM sub), \
         fits AS (SELECT id, tier FROM left_over \
                  WHERE token_limit IS NULL OR tokens_used + reserved + $3 <= token_limit), \
         counted AS (UPDATE subscriptions s \
                     SET tokens_reserved = l.reserved + CASE WHEN EXISTS (SELECT 1 FROM fits) THEN $3 ELSE 0 END \
                     FROM left_over l WHERE s.id = l.id RETURNING s.id), \
         held AS (INSERT INTO quota_reservations (id, subscription_id, tokens, expires_at) \
                  SELECT $2, id, $3, $5 FROM fits RETURNING subscription_id) \
         SELECT held.subscription_id, fits.tier FROM held, fits, lease",
    )
    .bind::<diesel::sql_types::Uuid, _>(user)
    .bind::<diesel::sql_types::Uuid, _>(reservation)
    .bind::<diesel::sql_types::BigInt, _>(tokens)
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .bind::<diesel::sql_types::Timestamptz, _>(expires_at)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(min_tier)
    .cached()
    .get_result(conn)
    .await
    .optional()
}

/// One request of [`reserve_batch`].
pub struct BatchReservation<'a> {
    pub id: Uuid,
    pub user: Uuid,
    pub tokens: i64,
    pub expires_at: DateTime<Utc>,
    pub min_tier: &'a str,
}

/// A reservation [`reserve_batch`] granted.
#[derive(QueryableByName)]
pub struct GrantedIn {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub subscription_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub tier: String,
}

/// [`reserve_in_one_statement`] for many requests at once (one round trip, one commit), in order:
/// each subscription's requests are granted while its running total fits, so a batch can never
/// reserve more than the limit; once one does not fit, the later ones of that subscription are not
/// granted either (they take the slow path, as refusals always do). Subscriptions are locked in id
/// order, as the meter locks them. Returns the granted requests only.
pub async fn reserve_batch(
    conn: &mut AsyncPgConnection,
    requests: &[BatchReservation<'_>],
    now: DateTime<Utc>,
) -> QueryResult<Vec<GrantedIn>> {
    use diesel::sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid};
    diesel::sql_query(
        "WITH lease AS (SELECT set_config('synchronous_commit', 'off', true)), \
         req AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[]) \
                 WITH ORDINALITY AS r(id, user_id, tokens, expires_at, min_tier, ord)), \
         sub AS (SELECT s.id, s.user_id, s.tier, p.token_limit, p.rank, s.tokens_used, s.tokens_reserved \
                 FROM subscriptions s JOIN plans p ON p.tier = s.tier \
                 WHERE s.user_id = ANY($2::uuid[]) AND s.status <> 'EXPIRED' AND s.current_period_end > $6 \
                 ORDER BY s.id FOR UPDATE OF s), \
         expired AS (DELETE FROM quota_reservations r USING sub \
                     WHERE r.subscription_id = sub.id AND r.expires_at <= $6 \
                     RETURNING r.subscription_id, r.tokens), \
         left_over AS (SELECT sub.id, GREATEST(sub.tokens_reserved - coalesce( \
                         (SELECT sum(e.tokens) FROM expired e WHERE e.subscription_id = sub.id), 0), 0)::bigint AS reserved \
                       FROM sub), \
         wanted AS (SELECT req.id, req.tokens, req.expires_at, sub.id AS sid, sub.tier, sub.token_limit, \
                      sub.tokens_used, l.reserved, \
                      sum(req.tokens) OVER (PARTITION BY sub.id ORDER BY req.ord) AS running \
                    FROM req JOIN sub ON sub.user_id = req.user_id JOIN left_over l ON l.id = sub.id \
                    WHERE sub.rank >= (SELECT p.rank FROM plans p WHERE p.tier = req.min_tier)), \
         granted AS (SELECT * FROM wanted \
                     WHERE token_limit IS NULL OR tokens_used + reserved + running <= token_limit), \
         counted AS (UPDATE subscriptions s SET tokens_reserved = l.reserved + coalesce( \
                       (SELECT sum(g.tokens) FROM granted g WHERE g.sid = s.id), 0)::bigint \
                     FROM left_over l WHERE s.id = l.id RETURNING s.id), \
         held AS (INSERT INTO quota_reservations (id, subscription_id, tokens, expires_at) \
                  SELECT id, sid, tokens, expires_at FROM granted RETURNING id) \
         SELECT g.id, g.sid AS subscription_id, g.tier FROM granted g, lease",
    )
    .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.user).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(requests.iter().map(|r| r.tokens).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(requests.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(requests.iter().map(|r| r.min_tier).collect::<Vec<_>>())
    .bind::<Timestamptz, _>(now)
    .cached()
    .load(conn)
    .await
}

pub async fn insert_reservation(
    conn: &mut AsyncPgConnection,
    reservation: Reservation,
    expires_at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::insert_into(quota_reservations::table)
        .values((
            quota_reservations::id.eq(reservation.id),
            quota_reservations::subscription_id.eq(reservation.subscription_id),
            quota_reservations::tokens.eq(reservation.tokens),
            quota_reservations::expires_at.eq(expires_at),
        ))
        .execute(conn)
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

/// Removes a reservation; `None` when it was already settled, released or expired.
pub async fn take_reservation(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<Reservation>> {
    diesel::delete(quota_reservations::table.find(id))
        .returning(Reservation::as_returning())
        .get_result(conn)
        .await
        .optional()
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

/// `settle_batch.sql`: a part of the meter's statement (see `db::compose`).
pub const SETTLE_BATCH: Part = Part {
    sql: include_str!("settle_batch.sql"),
    params: 3,
};

/// Binds [`SETTLE_BATCH`]'s parameters: subscriptions in id order with the tokens each used, and the
/// reservations settled.
pub fn bind_settle_batch<'a>(
    query: Composed<'a>,
    used: &std::collections::BTreeMap<Uuid, i64>,
    reservations: Vec<Uuid>,
) -> Composed<'a> {
    query
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
            used.keys().copied().collect::<Vec<_>>(),
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(reservations)
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(
            used.values().copied().collect::<Vec<_>>(),
        )
}
