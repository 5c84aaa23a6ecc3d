//! Subscriptions: the current one (rolled forward when its period ended), subscribing, changing plans,
//! cancelling and resuming, and forgetting a deleted user. See the module documentation of
//! [`crate::billing`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::model::{
    EventKind, EventRow, NewSubscription, PaidBy, PlanRow, PlanTier, SubscriptionRow,
    SubscriptionStatus, TierCount,
};
use super::paid_plans;
use super::payment::Payments;
use super::periods::add_months;
use super::renewal::{record, roll_forward, state_of};
use super::repo::{self, SubscriptionState};
use crate::app::AppState;
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

/// The user's current subscription, with any ended period rolled forward first.
pub async fn current(app: &AppState, user: UserId) -> AppResult<Option<SubscriptionView>> {
    let now = app.clock.now();
    let mut conn = app.pool.get().await?;
    let Some((row, plan)) = repo::current_with_plans(&mut conn, &[user.0]).await?.pop() else {
        return Ok(None);
    };
    if !row.is_due(now) {
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
        let view = if row.is_due(now) {
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

/// What `subscribe` answers: the subscription as it stands, and where to pay when the plan asked for
/// starts only once the provider confirms payment.
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub view: SubscriptionView,
    pub checkout_url: Option<String>,
}

/// Subscribes, upgrades at once, schedules a downgrade for the period end, or undoes a pending change.
/// With a payment provider, a paid plan the provider does not bill yet is paid for at checkout first
/// (nothing changes until its webhook), and a plan it bills is changed there first.
#[tracing::instrument(skip_all, fields(user_id = %user.0, tier = tier.as_db()))]
pub async fn subscribe(
    app: &AppState,
    user: UserId,
    email: &str,
    tier: PlanTier,
) -> AppResult<Subscribed> {
    if let Payments::Provider(provider) = &app.payments {
        let wanted = {
            let mut conn = app.pool.get().await?;
            repo::find_plan(&mut conn, tier).await?
        };
        let current = current(app, user).await?;
        let prepared = paid_plans::prepare(
            app,
            provider.as_ref(),
            user,
            email,
            current.as_ref().map(|view| (&view.row, &view.plan)),
            &wanted,
        )
        .await?;
        match prepared {
            paid_plans::Prepared::Checkout(url) => {
                let view = current.unwrap_or_else(|| SubscriptionView {
                    row: paid_plans::incomplete(user, &wanted, app.clock.now()),
                    plan: wanted,
                });
                return Ok(Subscribed {
                    view,
                    checkout_url: Some(url),
                });
            }
            paid_plans::Prepared::Paid => {
                let view = change_plan(app, user, tier, PaymentTaken::ByProvider).await?;
                return Ok(Subscribed {
                    view,
                    checkout_url: None,
                });
            }
            paid_plans::Prepared::Local => {}
        }
    }
    let view = change_plan(app, user, tier, PaymentTaken::NotYet).await?;
    Ok(Subscribed {
        view,
        checkout_url: None,
    })
}

/// Whether a plan change's payment was already taken (by the provider, which bills the subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PaymentTaken {
    NotYet,
    ByProvider,
}

async fn change_plan(
    app: &AppState,
    user: UserId,
    tier: PlanTier,
    taken: PaymentTaken,
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
                let paid_by = charge(app, user, &wanted, taken)?;
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
                        paid_by,
                        provider_subscription_id: None,
                        provider_event_at: None,
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
                if row.paid_by != PaidBy::Provider {
                    state.paid_by = charge(app, user, &wanted, taken)?;
                }
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
    // This instance's next call sees the new plan at once; the others when the trigger's
    // notification arrives.
    app.caches.invalidate_user(user.0);
    Ok(view)
}

/// Cancels at the period end: access continues until then.
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn cancel(app: &AppState, user: UserId) -> AppResult<SubscriptionView> {
    paid_plans::set_cancellation(app, user, true).await?;
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
    paid_plans::set_cancellation(app, user, false).await?;
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

/// Who pays for `plan` when the subscription takes it now: nobody for a free plan, the provider when
/// it already took the payment, else the manual provider (which approves at once) or nobody at all
/// (`PAYMENT_REQUIRED`).
fn charge(app: &AppState, user: UserId, plan: &PlanRow, taken: PaymentTaken) -> AppResult<PaidBy> {
    if plan.price_cents == 0 {
        return Ok(PaidBy::None);
    }
    if taken == PaymentTaken::ByProvider {
        return Ok(PaidBy::Provider);
    }
    app.payments.approve_without_provider(user.0, plan)?;
    Ok(PaidBy::Manual)
}

/// Ends a user's subscription at once inside the caller's transaction (the account is being deleted):
/// it expires as of `now`, with an `EXPIRED` event, and its reservations are dropped.
/// Active paid subscriptions that renew within `within` of `now` (for the renewal notice).
pub async fn renewing_soon(
    app: &AppState,
    now: DateTime<Utc>,
    within: std::time::Duration,
) -> AppResult<Vec<SubscriptionRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::renewing_between(&mut conn, now, crate::clock::after(now, within)).await?)
}

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

/// Current subscriptions per tier and status, with the plan's price.
pub async fn tier_counts(app: &AppState) -> AppResult<Vec<TierCount>> {
    let mut conn = app.read_pool.get().await?;
    Ok(repo::tier_counts(&mut conn).await?)
}

/// A user's subscription history (all their subscriptions), oldest first.
pub async fn history_for_user(app: &AppState, user: UserId) -> AppResult<Vec<EventRow>> {
    let mut conn = app.pool.get().await?;
    Ok(repo::events_of_user(&mut conn, user.0).await?)
}
