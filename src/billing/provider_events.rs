//! The payment provider's events, applied to subscriptions exactly once and in order.
//!
//! - Exactly once: each event is stored by the provider's id in the transaction that applies it; a
//!   redelivery finds it and changes nothing.
//! - In order: a subscription remembers the time of the newest provider event applied to it; an older
//!   event is stored as `STALE` and changes nothing, so a late "payment failed" never undoes the
//!   "invoice paid" that followed it.
//! - The life of a paid plan: a paid checkout starts it (or moves the current subscription onto it, a
//!   new period from now); a paid invoice extends the period (and ends a `PAST_DUE`); a failed payment
//!   makes it `PAST_DUE` until `HUB_PAYMENT_GRACE_DAYS` have passed, then it expires (`renewal`);
//!   changes made at the provider (plan, cancellation) are mirrored; the provider ending it expires it
//!   at once, or moves it to the free plan a downgrade scheduled.
//!
//! Each change is a subscription event and an audit entry (by the system).

use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::model::{
    EventKind, NewSubscription, PaidBy, PlanTier, SubscriptionRow, SubscriptionStatus,
};
use super::payment::{PaymentChange, PaymentEvent};
use super::periods::add_months;
use super::renewal::{fresh_period, record, roll_forward, state_of};
use super::repo::{self, SubscriptionState};
use crate::app::AppState;
use crate::audit::service::{self as audit, Actor};
use crate::error::{AppError, AppResult};

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Older than the state it would change.
    Stale,
    /// A type, or an object, the hub has no use for.
    Ignored,
    /// Delivered before: nothing done.
    Duplicate,
}

impl Outcome {
    fn as_db(self) -> &'static str {
        match self {
            Self::Applied => "APPLIED",
            Self::Stale => "STALE",
            Self::Ignored | Self::Duplicate => "IGNORED",
        }
    }
}

/// Applies a verified event once.
#[tracing::instrument(skip_all, fields(event = %event.id, kind = %event.kind))]
pub async fn apply(app: &AppState, event: &PaymentEvent) -> AppResult<Outcome> {
    let now = app.clock.now();
    let grace = chrono::Duration::from_std(app.config.payments.grace).unwrap_or_default();
    let mut conn = app.pool.get().await?;
    let outcome = conn
        .transaction::<_, AppError, _>(async |conn| {
            let fresh = repo::record_payment_event(
                conn,
                &event.id,
                &event.kind,
                event.occurred_at,
                Outcome::Ignored.as_db(),
            )
            .await?;
            if !fresh {
                return Ok(Outcome::Duplicate);
            }
            let at = Moment {
                event: event.occurred_at,
                now,
                grace,
            };
            let outcome = match &event.change {
                None => Outcome::Ignored,
                Some(change) => apply_change(conn, change, at, &event.id).await?,
            };
            if outcome != Outcome::Ignored {
                repo::set_payment_event_outcome(conn, &event.id, outcome.as_db()).await?;
            }
            Ok(outcome)
        })
        .await?;
    tracing::info!(?outcome, "payment event");
    Ok(outcome)
}

/// When an event happened, when it is applied, and the grace a failed payment gets.
#[derive(Clone, Copy)]
struct Moment {
    event: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
}

async fn apply_change(
    conn: &mut AsyncPgConnection,
    change: &PaymentChange,
    at: Moment,
    event_id: &str,
) -> diesel::QueryResult<Outcome> {
    if let PaymentChange::CheckoutPaid {
        user,
        tier,
        customer,
        subscription,
    } = change
    {
        return checkout_paid(conn, *user, *tier, customer, subscription, at, event_id).await;
    }
    let subscription = match change {
        PaymentChange::InvoicePaid { subscription, .. }
        | PaymentChange::PaymentFailed { subscription }
        | PaymentChange::SubscriptionUpdated { subscription, .. }
        | PaymentChange::SubscriptionEnded { subscription } => subscription,
        PaymentChange::CheckoutPaid { .. } => return Ok(Outcome::Ignored),
    };
    let Some(row) = repo::lock_by_provider_subscription(conn, subscription).await? else {
        return Ok(Outcome::Ignored);
    };
    let row = roll_forward(conn, row, at.now).await?;
    if row
        .provider_event_at
        .is_some_and(|newest| newest > at.event)
    {
        return Ok(Outcome::Stale);
    }
    if row.status() == SubscriptionStatus::Expired {
        return Ok(Outcome::Ignored);
    }
    let mut state = state_of(&row);
    state.provider_event_at = Some(at.event);
    let mut events = Vec::new();
    match change {
        PaymentChange::InvoicePaid { period, .. } => {
            recover(&mut state, &mut events);
            extend(&row, &mut state, *period, &mut events);
        }
        PaymentChange::PaymentFailed { .. } => fail(&mut state, at, &mut events),
        PaymentChange::SubscriptionUpdated {
            tier,
            cancel_at_period_end,
            past_due,
            period,
            ..
        } => {
            mirror_plan(
                conn,
                &row,
                &mut state,
                *tier,
                *cancel_at_period_end,
                &mut events,
            )
            .await?;
            if *past_due {
                fail(&mut state, at, &mut events);
            }
            extend(&row, &mut state, *period, &mut events);
        }
        PaymentChange::SubscriptionEnded { .. } => {
            end(conn, &row, &mut state, at, &mut events).await?;
        }
        PaymentChange::CheckoutPaid { .. } => {}
    }
    let saved = repo::save_state(conn, row.id, state).await?;
    if saved.paid_by != PaidBy::Provider {
        repo::set_provider_subscription(conn, row.id, None).await?;
    }
    for (kind, from, to) in &events {
        record(conn, &saved, *kind, *from, *to, at.now).await?;
        audit_change(conn, &saved, *kind, event_id).await?;
    }
    Ok(Outcome::Applied)
}

type Change = (EventKind, Option<PlanTier>, Option<PlanTier>);

async fn checkout_paid(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    tier: PlanTier,
    customer: &str,
    subscription: &str,
    at: Moment,
    event_id: &str,
) -> diesel::QueryResult<Outcome> {
    let saved_customer = conn
        .transaction::<_, DieselError, _>(async |conn| {
            repo::save_customer(conn, user, customer).await
        })
        .await;
    match saved_customer {
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            tracing::warn!(user_id = %user, "a checkout was paid for an account that no longer exists");
            return Ok(Outcome::Ignored);
        }
        other => other?,
    };
    let current = match repo::lock_current_for_user(conn, user).await? {
        Some(row) => Some(roll_forward(conn, row, at.now).await?),
        None => None,
    }
    .filter(|row| row.status() != SubscriptionStatus::Expired);
    let (start, end) = (at.now, add_months(at.now, 1));
    let Some(row) = current else {
        let row = repo::insert_subscription(
            conn,
            NewSubscription {
                id: Uuid::now_v7(),
                user_id: user,
                tier,
                status: SubscriptionStatus::Active,
                billing_anchor: start,
                current_period_start: start,
                current_period_end: end,
                paid_by: PaidBy::Provider,
                provider_subscription_id: Some(subscription.to_owned()),
                provider_event_at: Some(at.event),
            },
        )
        .await?;
        record(conn, &row, EventKind::Created, None, Some(tier), at.now).await?;
        audit_change(conn, &row, EventKind::Created, event_id).await?;
        return Ok(Outcome::Applied);
    };
    if row.provider_subscription_id.as_deref() == Some(subscription)
        || row
            .provider_event_at
            .is_some_and(|newest| newest > at.event)
    {
        return Ok(Outcome::Stale);
    }
    if let Some(other) = row
        .provider_subscription_id
        .as_deref()
        .filter(|_| row.paid_by == PaidBy::Provider)
    {
        tracing::error!(user_id = %user, previous = other, new = subscription,
            "a second provider subscription was paid for one account: cancel the previous one at the provider");
    }
    let mut state = fresh_period(&row, tier, start, end, PaidBy::Provider);
    state.provider_event_at = Some(at.event);
    repo::set_provider_subscription(conn, row.id, Some(subscription)).await?;
    let saved = repo::save_state(conn, row.id, state).await?;
    let kind = if row.tier == tier {
        EventKind::Renewed
    } else {
        EventKind::Upgraded
    };
    record(conn, &saved, kind, Some(row.tier), Some(tier), at.now).await?;
    audit_change(conn, &saved, kind, event_id).await?;
    Ok(Outcome::Applied)
}

/// A payment arrived: a `PAST_DUE` subscription is in good standing again.
fn recover(state: &mut SubscriptionState, events: &mut Vec<Change>) {
    if state.status == SubscriptionStatus::PastDue {
        state.status = if state.cancel_at_period_end {
            SubscriptionStatus::Cancelled
        } else {
            SubscriptionStatus::Active
        };
        state.grace_ends_at = None;
        events.push((
            EventKind::PaymentRecovered,
            Some(state.tier),
            Some(state.tier),
        ));
    }
}

/// A payment failed: `PAST_DUE` until the grace period ends (a later failure does not extend it).
fn fail(state: &mut SubscriptionState, at: Moment, events: &mut Vec<Change>) {
    if state.status != SubscriptionStatus::PastDue {
        state.status = SubscriptionStatus::PastDue;
        state.grace_ends_at = Some(at.now + at.grace);
        events.push((EventKind::PaymentFailed, Some(state.tier), Some(state.tier)));
    }
}

/// The provider's period, when it runs past ours, becomes ours (a new period starts with nothing used).
fn extend(
    row: &SubscriptionRow,
    state: &mut SubscriptionState,
    period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    events: &mut Vec<Change>,
) {
    let Some((start, end)) =
        period.filter(|(start, end)| *end > state.current_period_end && end > start)
    else {
        return;
    };
    if start >= row.current_period_end {
        state.tokens_used = 0;
    }
    state.billing_anchor = start;
    state.current_period_start = start;
    state.current_period_end = end;
    events.push((EventKind::Renewed, Some(state.tier), Some(state.tier)));
}

/// Mirrors a plan or cancellation changed at the provider (its portal, its dashboard).
async fn mirror_plan(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    state: &mut SubscriptionState,
    tier: Option<PlanTier>,
    cancel_at_period_end: bool,
    events: &mut Vec<Change>,
) -> diesel::QueryResult<()> {
    let current = repo::find_plan(conn, row.tier).await?;
    let scheduled_free = match row.scheduled_tier {
        Some(scheduled) => repo::find_plan(conn, scheduled).await?.price_cents == 0,
        None => false,
    };
    if let Some(tier) = tier.filter(|tier| *tier != row.tier) {
        let wanted = repo::find_plan(conn, tier).await?;
        if wanted.rank > current.rank {
            state.tier = tier;
            state.scheduled_tier = None;
            events.push((EventKind::Upgraded, Some(row.tier), Some(tier)));
        } else if row.scheduled_tier != Some(tier) {
            state.scheduled_tier = Some(tier);
            events.push((EventKind::DowngradeScheduled, Some(row.tier), Some(tier)));
        }
    } else if tier == Some(row.tier) && row.scheduled_tier.is_some() && !scheduled_free {
        state.scheduled_tier = None;
        events.push((
            EventKind::DowngradeCancelled,
            Some(row.tier),
            Some(row.tier),
        ));
    }
    if cancel_at_period_end && !scheduled_free && row.status() != SubscriptionStatus::Cancelled {
        state.status = SubscriptionStatus::Cancelled;
        state.cancel_at_period_end = true;
        state.scheduled_tier = None;
        events.push((EventKind::Cancelled, Some(row.tier), Some(row.tier)));
    } else if !cancel_at_period_end && scheduled_free {
        state.scheduled_tier = None;
        events.push((
            EventKind::DowngradeCancelled,
            Some(row.tier),
            Some(row.tier),
        ));
    } else if !cancel_at_period_end && row.status() == SubscriptionStatus::Cancelled {
        state.status = SubscriptionStatus::Active;
        state.cancel_at_period_end = false;
        events.push((EventKind::Resumed, Some(row.tier), Some(row.tier)));
    }
    Ok(())
}

/// The provider ended the subscription: it moves to the free plan a downgrade scheduled, or expires.
async fn end(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    state: &mut SubscriptionState,
    at: Moment,
    events: &mut Vec<Change>,
) -> diesel::QueryResult<()> {
    let free = match row.scheduled_tier {
        Some(scheduled) if repo::find_plan(conn, scheduled).await?.price_cents == 0 => {
            Some(scheduled)
        }
        _ => None,
    };
    state.paid_by = PaidBy::None;
    state.grace_ends_at = None;
    state.scheduled_tier = None;
    match free {
        Some(free) => {
            state.tier = free;
            state.status = SubscriptionStatus::Active;
            state.cancel_at_period_end = false;
            state.billing_anchor = at.now;
            state.current_period_start = at.now;
            state.current_period_end = add_months(at.now, 1);
            state.tokens_used = 0;
            events.push((EventKind::Renewed, Some(row.tier), Some(free)));
        }
        None => {
            state.status = SubscriptionStatus::Expired;
            state.cancel_at_period_end = true;
            events.push((EventKind::Expired, Some(row.tier), None));
        }
    }
    Ok(())
}

async fn audit_change(
    conn: &mut AsyncPgConnection,
    row: &SubscriptionRow,
    kind: EventKind,
    event_id: &str,
) -> diesel::QueryResult<()> {
    let action = format!("subscription.{}", kind.as_db().to_ascii_lowercase());
    audit::record_in(
        conn,
        &Actor::default(),
        audit::Event {
            action: &action,
            target_type: "subscription",
            target_id: Some(row.id.to_string()),
            before: None,
            after: Some(serde_json::json!({
                "userId": row.user_id,
                "tier": row.tier,
                "status": row.status,
                "paymentEvent": event_id,
            })),
        },
    )
    .await
}
