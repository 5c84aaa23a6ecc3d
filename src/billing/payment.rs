//! The seam for taking payment. The subscription rules ask [`Payments`] how a paid plan is paid for:
//!
//! - [`Payments::Provider`]: a payment provider (Stripe, `billing::stripe`). A paid plan starts only when
//!   the provider confirms payment in a signed webhook (`billing::provider_events`); changes of a plan
//!   the provider bills are made there first and mirrored here.
//! - [`Payments::Manual`]: every charge is approved at once (invoices settled outside the hub). For
//!   development and tests; production takes it only as an explicit, loudly logged opt-in.
//! - [`Payments::Unconfigured`]: production without a provider; paid plans answer `PAYMENT_REQUIRED`.
//!
//! Another provider implements [`PaymentProvider`] without touching the rules.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{PlanRow, PlanTier};
use crate::error::AppError;

/// How paid plans are paid for.
#[derive(Clone)]
pub enum Payments {
    Manual,
    Unconfigured,
    Provider(Arc<dyn PaymentProvider>),
}

impl Payments {
    /// Approves a charge for `plan` when no provider takes it: at once with the manual provider,
    /// never without one.
    pub fn approve_without_provider(&self, user: Uuid, plan: &PlanRow) -> Result<(), AppError> {
        match self {
            Self::Manual => {
                tracing::info!(
                    user_id = %user,
                    tier = %plan.tier,
                    amount_cents = plan.price_cents,
                    currency = %plan.currency,
                    "manual payment provider: charge approved"
                );
                Ok(())
            }
            Self::Unconfigured | Self::Provider(_) => Err(payment_required()),
        }
    }
}

/// The refusal of a paid plan when nothing can take payment.
pub fn payment_required() -> AppError {
    AppError::PaymentRequired(
        "Paid plans need a payment provider, and none is configured on this server.".into(),
    )
}

/// A checkout for a paid plan.
pub struct CheckoutRequest<'a> {
    pub user_id: Uuid,
    pub email: &'a str,
    pub tier: PlanTier,
    /// The user's customer at the provider, when an earlier checkout created one.
    pub customer: Option<&'a str>,
    pub success_url: String,
    pub cancel_url: String,
}

/// A boxed future, so providers can be chosen at run time.
pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// What the hub asks of a payment provider. Every call either succeeds or changes nothing the hub
/// relies on; a provider that cannot be reached answers `SERVICE_UNAVAILABLE`.
pub trait PaymentProvider: Send + Sync {
    /// A page where the user pays for a plan; returns its URL.
    fn checkout<'a>(&'a self, request: CheckoutRequest<'a>) -> ProviderFuture<'a, String>;

    /// Moves a provider subscription to `tier`'s price: charged now, prorated (`charge_now`, an
    /// upgrade, refused if the payment fails), or from the next invoice (a downgrade).
    fn change_plan<'a>(
        &'a self,
        subscription: &'a str,
        tier: PlanTier,
        charge_now: bool,
    ) -> ProviderFuture<'a, ()>;

    /// Sets or clears a provider subscription's cancellation at its period end.
    fn cancel_at_period_end<'a>(
        &'a self,
        subscription: &'a str,
        cancel: bool,
    ) -> ProviderFuture<'a, ()>;

    /// A page where the customer manages their card and invoices; returns its URL.
    fn portal<'a>(&'a self, customer: &'a str, return_url: String) -> ProviderFuture<'a, String>;

    /// The request header that carries a webhook's signature.
    fn signature_header(&self) -> &'static str;

    /// Verifies a webhook's signature and reads its event.
    fn read_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<PaymentEvent, WebhookRefusal>;
}

/// Why a webhook was refused (answered 400; nothing changes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookRefusal {
    #[error("the signature header is missing")]
    MissingSignature,
    #[error("no signature matches")]
    BadSignature,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("the body is not an event: {0}")]
    Malformed(String),
}

/// A provider's event, in the hub's terms.
#[derive(Debug, Clone)]
pub struct PaymentEvent {
    /// The provider's event id: an event is applied once however often it is delivered.
    pub id: String,
    /// The provider's type name, as received.
    pub kind: String,
    /// When the provider created it: an older event never undoes a newer state.
    pub occurred_at: DateTime<Utc>,
    /// What it changes; `None` for types the hub does not use.
    pub change: Option<PaymentChange>,
}

/// The changes a provider reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentChange {
    /// A checkout was paid: the user's plan becomes `tier`, billed by `subscription`.
    CheckoutPaid {
        user: Uuid,
        tier: PlanTier,
        customer: String,
        subscription: String,
    },
    /// An invoice of `subscription` was paid, for the period `[start, end)` when known.
    InvoicePaid {
        subscription: String,
        period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    },
    /// A payment for `subscription` failed.
    PaymentFailed { subscription: String },
    /// `subscription` changed at the provider (a plan, a cancellation, a period).
    SubscriptionUpdated {
        subscription: String,
        /// The tier of its price; `None` for a price no tier is configured with.
        tier: Option<PlanTier>,
        cancel_at_period_end: bool,
        past_due: bool,
        period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    },
    /// `subscription` ended at the provider.
    SubscriptionEnded { subscription: String },
}
