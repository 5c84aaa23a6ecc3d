//! Paid plans through a payment provider: what a plan change asks of the provider before the rules
//! change anything here (`service`), and the billing portal.
//!
//! - A paid plan the provider does not bill yet (from no plan, a free one, a granted one) is paid for
//!   at checkout: the answer carries the checkout's URL and nothing changes until the provider's
//!   webhook confirms payment (`provider_events`).
//! - A plan the provider bills is changed there first: an upgrade is charged at once, prorated, and
//!   refused if the payment fails; a downgrade to another paid plan takes the new price from the next
//!   invoice; a downgrade to a free plan, and a cancellation, end the provider's subscription at the
//!   period end. Undoing either is undone there too. The provider's own changes (in its portal) come
//!   back as webhooks and are mirrored.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{PaidBy, PlanRow, SubscriptionRow, SubscriptionStatus};
use super::payment::{CheckoutRequest, PaymentProvider, Payments};
use super::repo;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::users::model::UserId;

/// What the provider made of a plan change.
pub enum Prepared {
    /// Pay at this URL first; nothing changed.
    Checkout(String),
    /// The provider bills the subscription and took the change; apply it here.
    Paid,
    /// The provider has no part in it (a free plan, or undoing a change of a plan it does not bill).
    Local,
}

/// The provider subscription that bills `row`, if one does.
fn billed_by_provider(row: &SubscriptionRow) -> Option<&str> {
    row.provider_subscription_id
        .as_deref()
        .filter(|_| row.paid_by == PaidBy::Provider)
}

/// Asks the provider for what moving `user` from `current` to `wanted` needs.
pub async fn prepare(
    app: &AppState,
    provider: &dyn PaymentProvider,
    user: UserId,
    email: &str,
    current: Option<(&SubscriptionRow, &PlanRow)>,
    wanted: &PlanRow,
) -> AppResult<Prepared> {
    let Some((row, plan)) = current else {
        return checkout_if_paid(app, provider, user, email, wanted).await;
    };
    let Some(billed) = billed_by_provider(row) else {
        if row.tier == wanted.tier {
            return Ok(Prepared::Local);
        }
        return checkout_if_paid(app, provider, user, email, wanted).await;
    };
    if wanted.rank > plan.rank {
        provider.change_plan(billed, wanted.tier, true).await?;
    } else if wanted.rank < plan.rank {
        if row.status() == SubscriptionStatus::Cancelled || row.scheduled_tier == Some(wanted.tier)
        {
            // The rules refuse it; the provider is left alone.
            return Ok(Prepared::Paid);
        }
        if wanted.price_cents == 0 {
            provider.cancel_at_period_end(billed, true).await?;
        } else {
            provider.change_plan(billed, wanted.tier, false).await?;
        }
    } else if let Some(scheduled) = row.scheduled_tier {
        let scheduled_plan = {
            let mut conn = app.pool.get().await?;
            repo::find_plan(&mut conn, scheduled).await?
        };
        if scheduled_plan.price_cents == 0 {
            provider.cancel_at_period_end(billed, false).await?;
        } else {
            provider.change_plan(billed, row.tier, false).await?;
        }
    } else if row.status() == SubscriptionStatus::Cancelled {
        provider.cancel_at_period_end(billed, false).await?;
    }
    Ok(Prepared::Paid)
}

async fn checkout_if_paid(
    app: &AppState,
    provider: &dyn PaymentProvider,
    user: UserId,
    email: &str,
    wanted: &PlanRow,
) -> AppResult<Prepared> {
    if wanted.price_cents == 0 {
        return Ok(Prepared::Local);
    }
    let customer = {
        let mut conn = app.pool.get().await?;
        repo::customer_of(&mut conn, user.0).await?
    };
    let base = &app.config.mail.public_url;
    let url = provider
        .checkout(CheckoutRequest {
            user_id: user.0,
            email,
            tier: wanted.tier,
            customer: customer.as_deref(),
            success_url: format!("{base}/app/?checkout=success"),
            cancel_url: format!("{base}/app/?checkout=cancelled"),
        })
        .await?;
    tracing::info!(user_id = %user.0, tier = %wanted.tier, "checkout started");
    Ok(Prepared::Checkout(url))
}

/// Sets or clears the cancellation at the provider when it bills `user`'s subscription.
pub async fn set_cancellation(app: &AppState, user: UserId, cancel: bool) -> AppResult<()> {
    let Payments::Provider(provider) = &app.payments else {
        return Ok(());
    };
    let row = {
        let mut conn = app.pool.get().await?;
        repo::current_with_plans(&mut conn, &[user.0]).await?.pop()
    };
    let Some(billed) = row.as_ref().and_then(|(row, _)| billed_by_provider(row)) else {
        return Ok(());
    };
    provider.cancel_at_period_end(billed, cancel).await
}

/// The provider's page where `user` manages their card and invoices.
pub async fn portal_url(app: &AppState, user: UserId) -> AppResult<String> {
    let Payments::Provider(provider) = &app.payments else {
        return Err(AppError::Conflict(
            "This server takes no card payments, so there is no billing portal.".into(),
        ));
    };
    let customer = {
        let mut conn = app.pool.get().await?;
        repo::customer_of(&mut conn, user.0).await?
    };
    let Some(customer) = customer else {
        return Err(AppError::Conflict(
            "You have no billing account yet: it is created when you first pay for a plan.".into(),
        ));
    };
    let return_url = format!("{}/app/", app.config.mail.public_url);
    provider.portal(&customer, return_url).await
}

/// What `subscribe` answers while a checkout is pending and the user has no plan: the plan asked
/// for, `INCOMPLETE`, never stored.
pub fn incomplete(user: UserId, plan: &PlanRow, now: DateTime<Utc>) -> SubscriptionRow {
    SubscriptionRow {
        id: Uuid::nil(),
        user_id: user.0,
        tier: plan.tier,
        status: SubscriptionStatus::Incomplete,
        billing_anchor: now,
        current_period_start: now,
        current_period_end: now,
        cancel_at_period_end: false,
        scheduled_tier: None,
        tokens_used: 0,
        tokens_reserved: 0,
        created_at: now,
        paid_by: PaidBy::Provider,
        provider_subscription_id: None,
        grace_ends_at: None,
        provider_event_at: None,
    }
}
