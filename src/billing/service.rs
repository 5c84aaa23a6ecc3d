//! Subscription rules: plans, subscribing and changing plans, period roll-forward, the sweeper. See the module documentation of [`crate::billing`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::model::{
    EventKind, EventRow, NewEvent, NewSubscription, PlanChanges, PlanRow, PlanTier,
    SubscriptionRow, SubscriptionStatus,
};
use super::payment::ChargeRequest;
use super::periods::{add_months, period_bounds, period_index};
use super::repo::{self, SubscriptionState};
use crate::app::AppState;
use crate::audit::service::{self as audit, Actor};
use crate::error::{AppError, AppResult};
use crate::users::model::UserId;

/// A subscription with the plan it is on now.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub row: SubscriptionRow,
    pub plan: PlanRow,
}

impl SubscriptionView {
    /// Tokens left this period; `None` when the plan is unlimited.
    pub fn tokens_remaining(&self) -> Option<i64> {
        self.plan
            .token_limit
            .map(|limit| (limit - self.row.tokens_used - self.row.tokens_reserved).max(0))
    }
}

/// How many `RENEWED` events one roll-forward records at most (one per elapsed period).
const MAX_RENEWAL_EVENTS: u32 = 24;

pub async fn plans(app: &AppState) -> AppResult<Vec<PlanRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::list_plans(&mut conn).await?)
}

/// Checks and applies an administrator's changes to a plan.
#[tracing::instrument(skip_all, fields(tier = tier.as_db()))]
pub async fn update_plan(
    app: &AppState,
    actor: &Actor,
    tier: PlanTier,
    changes: PlanChanges,
) -> AppResult<PlanRow> {
    if let Some(name) = &changes.name
        && (name.trim().is_empty() || name.chars().count() > 60)
    {
        return Err(AppError::bad_input(
            "name",
            "A plan name has 1 to 60 characters.",
        ));
    }
    if changes.price_cents.is_some_and(|p| p < 0) {
        return Err(AppError::bad_input(
            "priceCents",
            "A price cannot be negative.",
        ));
    }
    if let Some(currency) = &changes.currency
        && !(currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase()))
    {
        return Err(AppError::bad_input(
            "currency",
            "Use a three-letter ISO 4217 code such as USD or EUR.",
        ));
    }
    if changes.token_limit.flatten().is_some_and(|l| l < 0) {
        return Err(AppError::bad_input(
            "tokenLimit",
            "A token limit cannot be negative.",
        ));
    }
    if changes.requests_per_minute.flatten().is_some_and(|r| r < 1) {
        return Err(AppError::bad_input(
            "requestsPerMinute",
            "Allow at least one request per minute, or null for no limit.",
        ));
    }
    let mut conn = app.pool.get().await?;
    let plan = conn
        .transaction::<_, AppError, _>(async |conn| {
            let before = repo::lock_plan(conn, tier).await?;
            let plan = repo::update_plan(conn, tier, &changes).await?;
            let (before, after) = audit::diff(&plan_view(&before), &plan_view(&plan));
            audit::record_in(
                conn,
                actor,
                audit::Event {
                    action: "plan.update",
                    target_type: "plan",
                    target_id: Some(plan.tier.to_string()),
                    before: Some(before),
                    after: Some(after),
                },
            )
            .await?;
            Ok(plan)
        })
        .await?;
    tracing::info!("plan updated");
    Ok(plan)
}

/// What the audit trail keeps of a plan.
fn plan_view(plan: &PlanRow) -> serde_json::Value {
    serde_json::json!({
        "name": plan.name,
        "priceCents": plan.price_cents,
        "currency": plan.currency,
        "tokenLimit": plan.token_limit,
        "requestsPerMinute": plan.requests_per_minute,
        "features": plan.features,
    })
}

/// The user's current subscription, with any ended period rolled forward first.
pub async fn current(app: &AppState, user: UserId) -> AppResult<Option<SubscriptionView>> {
    let now = app.clock.now();
    let mut conn = app.pool.get().await?;
    let Some((row, plan)) = repo::current_with_plan(&mut conn, user.0).await? else {
        return Ok(None);
    };
    if now < row.current_period_end {
        return Ok(Some(SubscriptionView { row, plan }));
    }
    // The period ended: roll it forward (the plan may change with a scheduled downgrade).
    let row = conn
        .transaction::<_, AppError, _>(async |conn| {
            let row = repo::lock_by_id(conn, row.id).await?;
            Ok(roll_forward(conn, row, now).await?)
        })
        .await?;
    if row.status() == SubscriptionStatus::Expired {
        return Ok(None);
    }
    let plan = repo::find_plan(&mut conn, row.tier).await?;
    Ok(Some(SubscriptionView { row, plan }))
}

/// The current subscriptions of several users, by user; periods that ended are rolled forward first
/// (rare: the sweeper usually got there first).
pub async fn current_for_users(
    app: &AppState,
    users: &[Uuid],
) -> AppResult<HashMap<Uuid, SubscriptionView>> {
    let rows = {
        let mut conn = app.pool.get().await?;
        repo::current_with_plans(&mut conn, users).await?
    };
    let now = app.clock.now();
    let mut views = HashMap::with_capacity(rows.len());
    for (row, plan) in rows {
        let user = row.user_id;
        let view = if now >= row.current_period_end {
            current(app, UserId(user)).await?
        } else {
            Some(SubscriptionView { row, plan })
        };
        if let Some(view) = view {
            views.insert(user, view);
        }
    }
    Ok(views)
}

/// Subscribes, upgrades at once, schedules a downgrade for the period end, or undoes a pending change.
#[tracing::instrument(skip_all, fields(user_id = %user.0, tier = tier.as_db()))]
pub async fn subscribe(
    app: &AppState,
    user: UserId,
    tier: PlanTier,
) -> AppResult<SubscriptionView> {
    let now = app.clock.now();
    let mut conn = app.pool.get().await?;
    let view = conn
        .transaction::<_, AppError, _>(async |conn| {
            let wanted = repo::find_plan(conn, tier).await?;
            let current = match repo::lock_current_for_user(conn, user.0).await? {
                Some(row) => Some(roll_forward(conn, row, now).await?),
                None => None,
            }
            .filter(|row| row.status() != SubscriptionStatus::Expired);

            let Some(row) = current else {
                let (start, end) = (now, add_months(now, 1));
                charge(app, user, &wanted, start, end, "create").await?;
                let row = repo::insert_subscription(
                    conn,
                    NewSubscription {
                        id: Uuid::now_v7(),
                        user_id: user.0,
                        tier: wanted.tier,
                        status: SubscriptionStatus::Active,
                        billing_anchor: now,
                        current_period_start: start,
                        current_period_end: end,
                    },
                )
                .await?;
                record(conn, &row, EventKind::Created, None, Some(wanted.tier), now).await?;
                tracing::info!("subscription created");
                return Ok(SubscriptionView { row, plan: wanted });
            };

            let current_plan = repo::find_plan(conn, row.tier).await?;
            let mut state = state_of(&row);
            let event = if wanted.rank > current_plan.rank {
                // Upgrades take effect now, in the same period; a pending cancellation or downgrade ends.
                charge(
                    app,
                    user,
                    &wanted,
                    row.current_period_start,
                    row.current_period_end,
                    "upgrade",
                )
                .await?;
                state.tier = wanted.tier;
                state.scheduled_tier = None;
                state.status = SubscriptionStatus::Active;
                state.cancel_at_period_end = false;
                EventKind::Upgraded
            } else if wanted.rank < current_plan.rank {
                if row.status() == SubscriptionStatus::Cancelled {
                    return Err(AppError::Conflict(
                        "Your subscription is cancelled: resume it before changing plans.".into(),
                    ));
                }
                if row.scheduled_tier == Some(wanted.tier) {
                    return Err(AppError::Conflict(format!(
                        "The move to {} is already scheduled for the end of this period.",
                        wanted.name
                    )));
                }
                state.scheduled_tier = Some(wanted.tier);
                EventKind::DowngradeScheduled
            } else if row.scheduled_tier.is_some() {
                state.scheduled_tier = None;
                EventKind::DowngradeCancelled
            } else if row.status() == SubscriptionStatus::Cancelled {
                state.status = SubscriptionStatus::Active;
                state.cancel_at_period_end = false;
                EventKind::Resumed
            } else {
                return Err(AppError::Conflict(format!(
                    "You are already on the {} plan.",
                    wanted.name
                )));
            };
            let target = state.scheduled_tier.unwrap_or(state.tier);
            let saved = repo::save_state(conn, row.id, state).await?;
            record(conn, &saved, event, Some(row.tier), Some(target), now).await?;
            tracing::info!(event = event.as_db(), "subscription changed");
            let plan = repo::find_plan(conn, saved.tier).await?;
            Ok(SubscriptionView { row: saved, plan })
        })
        .await?;
    Ok(view)
}

/// Cancels at the period end: access continues until then.
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn cancel(app: &AppState, user: UserId) -> AppResult<SubscriptionView> {
    change_current(app, user, |row| {
        if row.status() == SubscriptionStatus::Cancelled {
            return Err(AppError::Conflict(
                "Your subscription is already cancelled.".into(),
            ));
        }
        let mut state = state_of(row);
        state.status = SubscriptionStatus::Cancelled;
        state.cancel_at_period_end = true;
        state.scheduled_tier = None;
        Ok((state, EventKind::Cancelled))
    })
    .await
}

/// Undoes a pending cancellation.
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn resume(app: &AppState, user: UserId) -> AppResult<SubscriptionView> {
    change_current(app, user, |row| {
        if row.status() != SubscriptionStatus::Cancelled {
            return Err(AppError::Conflict(
                "Your subscription is not cancelled.".into(),
            ));
        }
        let mut state = state_of(row);
        state.status = SubscriptionStatus::Active;
        state.cancel_at_period_end = false;
        Ok((state, EventKind::Resumed))
    })
    .await
}

async fn change_current(
    app: &AppState,
    user: UserId,
    rule: impl FnOnce(&SubscriptionRow) -> AppResult<(SubscriptionState, EventKind)> + Send,
) -> AppResult<SubscriptionView> {
    let now = app.clock.now();
    let mut conn = app.pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let row = match repo::lock_current_for_user(conn, user.0).await? {
            Some(row) => roll_forward(conn, row, now).await?,
            None => return Err(no_subscription()),
        };
        if row.status() == SubscriptionStatus::Expired {
            return Err(no_subscription());
        }
        let (state, event) = rule(&row)?;
        let saved = repo::save_state(conn, row.id, state).await?;
        record(conn, &saved, event, Some(row.tier), Some(saved.tier), now).await?;
        tracing::info!(event = event.as_db(), "subscription changed");
        let plan = repo::find_plan(conn, saved.tier).await?;
        Ok(SubscriptionView { row: saved, plan })
    })
    .await
}

fn no_subscription() -> AppError {
    AppError::SubscriptionRequired(
        "You have no subscription: choose a plan with `subscribe`.".into(),
    )
}

fn state_of(row: &SubscriptionRow) -> SubscriptionState {
    SubscriptionState {
        tier: row.tier,
        status: row.status,
        current_period_start: row.current_period_start,
        current_period_end: row.current_period_end,
        cancel_at_period_end: row.cancel_at_period_end,
        scheduled_tier: row.scheduled_tier,
        tokens_used: row.tokens_used,
    }
}

async fn charge(
    app: &AppState,
    user: UserId,
    plan: &PlanRow,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    what: &str,
) -> AppResult<()> {
    if plan.price_cents == 0 {
        return Ok(());
    }
    app.payments
        .charge(ChargeRequest {
            user_id: user.0,
            plan,
            period_start,
            period_end,
            idempotency_key: format!(
                "{}:{}:{}:{what}",
                user.0,
                plan.tier,
                period_start.timestamp()
            ),
        })
        .await?;
    Ok(())
}

async fn record(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    kind: EventKind,
    from_tier: Option<PlanTier>,
    to_tier: Option<PlanTier>,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    repo::insert_event(
        conn,
        NewEvent {
            id: Uuid::now_v7(),
            subscription_id: row.id,
            user_id: row.user_id,
            kind,
            from_tier,
            to_tier,
            occurred_at: at,
        },
    )
    .await
}

/// Applies every period boundary passed by `now` to a locked subscription: expiry after a cancellation,
/// otherwise renewal (with any scheduled downgrade) into the period containing `now`, counter at zero.
async fn roll_forward(
    conn: &mut AsyncPgConnection,
    row: SubscriptionRow,
    now: DateTime<Utc>,
) -> QueryResult<SubscriptionRow> {
    if row.status() == SubscriptionStatus::Expired || now < row.current_period_end {
        return Ok(row);
    }
    if row.cancel_at_period_end {
        let mut state = state_of(&row);
        state.status = SubscriptionStatus::Expired;
        let saved = repo::save_state(conn, row.id, state).await?;
        record(
            conn,
            &saved,
            EventKind::Expired,
            Some(row.tier),
            None,
            row.current_period_end,
        )
        .await?;
        tracing::info!(subscription_id = %row.id, "subscription expired at the end of its period");
        return Ok(saved);
    }
    let old_index = period_index(row.billing_anchor, row.current_period_start);
    let index = period_index(row.billing_anchor, now).max(old_index + 1);
    let (start, end) = period_bounds(row.billing_anchor, index);
    let new_tier = row.scheduled_tier.unwrap_or(row.tier);
    let mut state = state_of(&row);
    state.tier = new_tier;
    state.scheduled_tier = None;
    state.current_period_start = start;
    state.current_period_end = end;
    state.tokens_used = 0;
    let saved = repo::save_state(conn, row.id, state).await?;
    for step in 1..=(index - old_index).min(MAX_RENEWAL_EVENTS) {
        let from = if step == 1 { row.tier } else { new_tier };
        let at = period_bounds(row.billing_anchor, old_index + step).0;
        record(
            conn,
            &saved,
            EventKind::Renewed,
            Some(from),
            Some(new_tier),
            at,
        )
        .await?;
    }
    tracing::info!(subscription_id = %row.id, tier = %new_tier, periods = index - old_index, "subscription renewed");
    Ok(saved)
}

/// Ends a user's subscription at once inside the caller's transaction (the account is being deleted):
/// it expires as of `now`, with an `EXPIRED` event, and its reservations are dropped.
pub async fn forget_user_in(
    conn: &mut AsyncPgConnection,
    user: UserId,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let Some(row) = repo::lock_current_for_user(conn, user.0).await? else {
        return Ok(());
    };
    repo::delete_reservations_of(conn, row.id).await?;
    let mut state = state_of(&row);
    state.status = SubscriptionStatus::Expired;
    state.cancel_at_period_end = true;
    state.scheduled_tier = None;
    let saved = repo::save_state(conn, row.id, state).await?;
    repo::clear_reserved(conn, row.id).await?;
    record(conn, &saved, EventKind::Expired, Some(row.tier), None, now).await?;
    Ok(())
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub subscriptions_rolled: usize,
    pub reservations_expired: usize,
}

/// Rolls forward every subscription whose period ended and returns the tokens of expired reservations.
/// Safe to run on several instances at once (`FOR UPDATE SKIP LOCKED`).
pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> AppResult<SweepReport> {
    const BATCH: i64 = 100;
    let mut report = SweepReport::default();
    let mut conn = app.pool.get().await?;
    loop {
        let rolled = conn
            .transaction::<_, AppError, _>(async |conn| {
                let due = repo::lock_due(conn, now, BATCH).await?;
                let count = due.len();
                for row in due {
                    roll_forward(conn, row, now).await?;
                }
                Ok(count)
            })
            .await?;
        report.subscriptions_rolled += rolled;
        if rolled < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            break;
        }
    }
    report.reservations_expired = conn
        .transaction::<_, AppError, _>(async |conn| {
            let expired = repo::take_expired_reservations(conn, None, now).await?;
            let mut per_subscription: HashMap<Uuid, i64> = HashMap::new();
            for reservation in &expired {
                *per_subscription
                    .entry(reservation.subscription_id)
                    .or_default() += reservation.tokens;
            }
            for (subscription, tokens) in per_subscription {
                repo::settle_counters(conn, subscription, tokens, 0).await?;
            }
            Ok(expired.len())
        })
        .await?;
    if report != SweepReport::default() {
        tracing::info!(?report, "billing sweep");
    }
    Ok(report)
}

/// Current subscriptions per tier and status, with the plan's price.
#[derive(Debug, Clone, diesel::QueryableByName)]
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
}

pub async fn tier_counts(app: &AppState) -> AppResult<Vec<TierCount>> {
    use diesel_async::RunQueryDsl;
    let mut conn = app.pool.get().await?;
    Ok(diesel::sql_query(
        "SELECT s.tier, s.status, count(*) AS subscriptions, p.price_cents, p.currency \
         FROM subscriptions s JOIN plans p ON p.tier = s.tier WHERE s.status <> 'EXPIRED' \
         GROUP BY s.tier, s.status, p.price_cents, p.currency, p.rank ORDER BY p.rank, s.status",
    )
    .load(&mut conn)
    .await?)
}

/// A user's subscription history (all their subscriptions), oldest first.
pub async fn history_for_user(app: &AppState, user: Uuid) -> AppResult<Vec<EventRow>> {
    use crate::db::schema::subscription_events;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let mut conn = app.pool.get().await?;
    Ok(subscription_events::table
        .filter(subscription_events::user_id.eq(user))
        .order((subscription_events::occurred_at, subscription_events::id))
        .select(EventRow::as_select())
        .load(&mut conn)
        .await?)
}
