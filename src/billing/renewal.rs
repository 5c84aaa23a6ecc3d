//! Periods moving on: a subscription whose period ended is rolled forward (renewed, downgraded as
//! scheduled, or expired) by whatever touches it next, and the sweeper does it in the background, with
//! the expired reservations' tokens returned. Every change is recorded as a subscription event.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::model::{EventKind, NewEvent, PaidBy, PlanTier, SubscriptionRow, SubscriptionStatus};
use super::periods::{period_bounds, period_index};
use super::repo::{self, SubscriptionState};
use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// How many `RENEWED` events one roll-forward records at most (one per elapsed period).
const MAX_RENEWAL_EVENTS: u32 = 24;

pub(super) fn state_of(row: &SubscriptionRow) -> SubscriptionState {
    SubscriptionState {
        tier: row.tier,
        status: row.status,
        billing_anchor: row.billing_anchor,
        current_period_start: row.current_period_start,
        current_period_end: row.current_period_end,
        cancel_at_period_end: row.cancel_at_period_end,
        scheduled_tier: row.scheduled_tier,
        tokens_used: row.tokens_used,
        paid_by: row.paid_by,
        grace_ends_at: row.grace_ends_at,
        provider_event_at: row.provider_event_at,
    }
}

/// `row` starting afresh on `tier` for `[start, end)`, paid by `paid_by`: nothing of the old period
/// carries over (its tokens, a cancellation, a scheduled downgrade, a payment's grace).
pub(super) fn fresh_period(
    row: &SubscriptionRow,
    tier: PlanTier,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    paid_by: PaidBy,
) -> SubscriptionState {
    SubscriptionState {
        tier,
        status: SubscriptionStatus::Active,
        billing_anchor: start,
        current_period_start: start,
        current_period_end: end,
        cancel_at_period_end: false,
        scheduled_tier: None,
        tokens_used: 0,
        paid_by,
        grace_ends_at: None,
        ..state_of(row)
    }
}

pub(super) async fn record(
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
pub(super) async fn roll_forward(
    conn: &mut AsyncPgConnection,
    row: SubscriptionRow,
    now: DateTime<Utc>,
) -> QueryResult<SubscriptionRow> {
    if row.status() == SubscriptionStatus::Expired || !row.is_due(now) {
        return Ok(row);
    }
    if let Some(grace_end) = row
        .grace_ends_at
        .filter(|end| row.status() == SubscriptionStatus::PastDue && now >= *end)
    {
        tracing::info!(subscription_id = %row.id, "subscription expired: its grace period ended unpaid");
        return expire(conn, &row, grace_end).await;
    }
    if now < row.current_period_end {
        return Ok(row);
    }
    if row.cancel_at_period_end || granted_to_the_end(conn, &row).await? {
        tracing::info!(subscription_id = %row.id, "subscription expired at the end of its period");
        return expire(conn, &row, row.current_period_end).await;
    }
    let new_tier = row.scheduled_tier.unwrap_or(row.tier);
    let mut state = state_of(&row);
    // A paid subscription moving to a free plan stops being paid for, and its periods count from
    // the end of the last paid one.
    let becomes_free = row.paid_by != PaidBy::None
        && row.scheduled_tier.is_some()
        && repo::find_plan(conn, new_tier).await?.price_cents == 0;
    if becomes_free {
        state.paid_by = PaidBy::None;
        state.billing_anchor = row.current_period_end;
        repo::set_provider_subscription(conn, row.id, None).await?;
    }
    let old_index = period_index(state.billing_anchor, row.current_period_start);
    let index = if becomes_free {
        period_index(state.billing_anchor, now)
    } else {
        period_index(state.billing_anchor, now).max(old_index + 1)
    };
    let (start, end) = period_bounds(state.billing_anchor, index);
    state.tier = new_tier;
    state.scheduled_tier = None;
    state.current_period_start = start;
    state.current_period_end = end;
    state.tokens_used = 0;
    let saved = repo::save_state(conn, row.id, state).await?;
    let first = if becomes_free { 0 } else { old_index + 1 };
    for step in 0..=(index.saturating_sub(first)).min(MAX_RENEWAL_EVENTS - 1) {
        let from = if step == 0 { row.tier } else { new_tier };
        let at = period_bounds(state.billing_anchor, first + step).0;
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
    tracing::info!(subscription_id = %row.id, tier = %new_tier, periods = index + 1 - first, "subscription renewed");
    Ok(saved)
}

/// Ends `row` as of `at`, with an `EXPIRED` event.
async fn expire(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    at: DateTime<Utc>,
) -> QueryResult<SubscriptionRow> {
    let mut state = state_of(row);
    state.status = SubscriptionStatus::Expired;
    let saved = repo::save_state(conn, row.id, state).await?;
    record(conn, &saved, EventKind::Expired, Some(row.tier), None, at).await?;
    Ok(saved)
}

/// Whether `row` is an administrator's grant whose period ended with no free plan to fall back to:
/// grants do not renew.
async fn granted_to_the_end(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
) -> QueryResult<bool> {
    if row.paid_by != PaidBy::Grant {
        return Ok(false);
    }
    let Some(next) = row.scheduled_tier else {
        return Ok(true);
    };
    Ok(repo::find_plan(conn, next).await?.price_cents > 0)
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
