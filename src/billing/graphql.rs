use async_graphql::{Context, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::model::{PaidBy, PlanChanges, PlanRow, PlanTier, SubscriptionStatus};
use super::plans;
use super::service::{self, Subscribed, SubscriptionView};
use super::{grant, paid_plans};
use crate::graphql::big_int::BigInt;
use crate::graphql::context::ContextExt;
use crate::graphql::guards::{AdminOnly, Scoped};
use crate::keys::model::Scope;

/// A plan users can subscribe to.
#[derive(SimpleObject, Clone)]
pub struct Plan {
    pub tier: PlanTier,
    pub name: String,
    /// Price per monthly period, in the currency's minor unit (cents).
    pub price_cents: BigInt,
    /// ISO 4217 code, e.g. USD.
    pub currency: String,
    /// Tokens per period; null means unlimited.
    pub token_limit: Option<BigInt>,
    /// Requests per minute; null means unlimited.
    pub requests_per_minute: Option<i32>,
    /// What the plan includes, for display.
    pub features: Vec<String>,
}

impl From<PlanRow> for Plan {
    fn from(row: PlanRow) -> Self {
        Self {
            tier: row.tier,
            features: row
                .features
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            name: row.name,
            price_cents: row.price_cents.into(),
            currency: row.currency,
            token_limit: row.token_limit.map(BigInt::from),
            requests_per_minute: row.requests_per_minute,
        }
    }
}

/// A user's subscription to a plan.
#[derive(SimpleObject)]
pub struct PlanSubscription {
    /// The plan in force now.
    pub plan: Plan,
    pub status: SubscriptionStatus,
    pub current_period_start: DateTime<Utc>,
    /// When the period renews (or, if cancelled, when access ends).
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    /// A downgrade that takes effect at the period end.
    pub scheduled_tier: Option<PlanTier>,
    /// Tokens used this period.
    pub tokens_used: BigInt,
    /// Tokens set aside for calls in flight.
    pub tokens_reserved: BigInt,
    /// The plan's limit per period; null means unlimited.
    pub token_limit: Option<BigInt>,
    /// What is left this period; null means unlimited.
    pub tokens_remaining: Option<BigInt>,
    /// Who pays for the plan: NONE (a free plan), PROVIDER (the payment provider), GRANT (an
    /// administrator), MANUAL (a development server).
    pub paid_by: PaidBy,
    /// While PAST_DUE: when the subscription expires unless a payment arrives first.
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// Set only on the answer to a `subscribe` that needs payment: open it to pay for the plan asked
    /// for. Nothing changes until the provider confirms the payment.
    pub checkout_url: Option<String>,
}

impl From<SubscriptionView> for PlanSubscription {
    fn from(view: SubscriptionView) -> Self {
        let tokens_remaining = view.tokens_remaining();
        let row = view.row;
        Self {
            status: row.status(),
            token_limit: view.plan.token_limit.map(BigInt::from),
            plan: view.plan.into(),
            current_period_start: row.current_period_start,
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end,
            scheduled_tier: row.scheduled_tier,
            tokens_used: row.tokens_used.into(),
            tokens_reserved: row.tokens_reserved.into(),
            tokens_remaining: tokens_remaining.map(BigInt::from),
            paid_by: row.paid_by,
            grace_ends_at: row.grace_ends_at,
            checkout_url: None,
        }
    }
}

impl From<Subscribed> for PlanSubscription {
    fn from(subscribed: Subscribed) -> Self {
        Self {
            checkout_url: subscribed.checkout_url,
            ..subscribed.view.into()
        }
    }
}

/// Changes to a plan; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdatePlanInput {
    pub name: Option<String>,
    pub price_cents: Option<BigInt>,
    pub currency: Option<String>,
    /// Tokens per period; null makes the plan unlimited.
    pub token_limit: MaybeUndefined<BigInt>,
    /// Requests per minute; null removes the limit.
    pub requests_per_minute: MaybeUndefined<i32>,
    pub features: Option<Vec<String>>,
}

fn maybe<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// Every plan, cheapest first. Needs no credentials.
    async fn plans(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Plan>> {
        let rows = plans::plans(ctx.app()?).await?;
        Ok(rows.into_iter().map(Plan::from).collect())
    }
}

#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// Subscribes to a plan (a one-month period starting now). A higher tier takes effect at once in the
    /// same period; a lower one is scheduled for the period end. Subscribing to the current tier undoes a
    /// scheduled downgrade or a cancellation. With a payment provider, a paid plan it does not bill yet
    /// answers the subscription unchanged (or INCOMPLETE without one) with a `checkoutUrl`: the plan
    /// starts when the payment is confirmed. Without a provider in production, paid plans are
    /// PAYMENT_REQUIRED.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn subscribe(
        &self,
        ctx: &Context<'_>,
        tier: PlanTier,
    ) -> async_graphql::Result<PlanSubscription> {
        let user = ctx.user()?;
        let app = ctx.app()?;
        let email = crate::users::service::get(app, user.id).await?.email;
        Ok(service::subscribe(app, user.id, &email, tier).await?.into())
    }

    /// A page at the payment provider where the user manages their card and invoices (open it; it
    /// expires after a few minutes). CONFLICT before the first payment.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn billing_portal_url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let user = ctx.user()?;
        Ok(paid_plans::portal_url(ctx.app()?, user.id).await?)
    }

    /// Puts a user on a plan until a date (administrators): for support, or a company paying by
    /// invoice. The period runs from now to `until`; then the user moves to the free plan. Audited.
    #[graphql(guard = "AdminOnly")]
    async fn grant_plan(
        &self,
        ctx: &Context<'_>,
        user_id: async_graphql::ID,
        tier: PlanTier,
        until: DateTime<Utc>,
    ) -> async_graphql::Result<PlanSubscription> {
        let user = crate::graphql::ids::parse(&user_id, "userId")?;
        let view = grant::grant(
            ctx.app()?,
            &ctx.actor()?,
            crate::users::model::UserId(user),
            tier,
            until,
        )
        .await?;
        Ok(view.into())
    }

    /// Cancels at the end of the period; access continues until then.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<PlanSubscription> {
        let user = ctx.user()?;
        Ok(service::cancel(ctx.app()?, user.id).await?.into())
    }

    /// Undoes a pending cancellation.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn resume_subscription(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<PlanSubscription> {
        let user = ctx.user()?;
        Ok(service::resume(ctx.app()?, user.id).await?.into())
    }

    /// Changes a plan's name, price, limits or features (administrators only). New limits apply to
    /// every subscriber at once.
    #[graphql(guard = "AdminOnly")]
    async fn update_plan(
        &self,
        ctx: &Context<'_>,
        tier: PlanTier,
        input: UpdatePlanInput,
    ) -> async_graphql::Result<Plan> {
        let changes = PlanChanges {
            name: input.name.map(|n| n.trim().to_owned()),
            price_cents: input.price_cents.map(i64::from),
            currency: input.currency,
            token_limit: maybe(input.token_limit).map(|limit| limit.map(i64::from)),
            requests_per_minute: maybe(input.requests_per_minute),
            features: input.features.map(serde_json::Value::from),
        };
        let plan = plans::update_plan(ctx.app()?, &ctx.actor()?, tier, changes).await?;
        Ok(plan.into())
    }
}
