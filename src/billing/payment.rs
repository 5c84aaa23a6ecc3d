//! The seam for taking payment. The subscription rules call a [`PaymentProvider`] before a change that
//! costs money; the [`ManualProvider`] used now approves at once (invoices are settled outside the hub).
//! A card processor implements the same trait without touching the rules.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::PlanRow;
use crate::error::AppError;

/// What is being paid for.
pub struct ChargeRequest<'a> {
    pub user_id: Uuid,
    pub plan: &'a PlanRow,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// The same key for a retried request, so a provider charges once.
    pub idempotency_key: String,
}

/// The provider's answer.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The provider's reference, for reconciliation.
    pub reference: String,
}

/// A boxed future, so providers can be chosen at run time.
pub type ChargeFuture<'a> = Pin<Box<dyn Future<Output = Result<Receipt, AppError>> + Send + 'a>>;

/// Takes payment; an error leaves the subscription unchanged.
pub trait PaymentProvider: Send + Sync {
    fn charge<'a>(&'a self, request: ChargeRequest<'a>) -> ChargeFuture<'a>;
}

/// Approves every charge at once.
pub struct ManualProvider;

impl PaymentProvider for ManualProvider {
    fn charge<'a>(&'a self, request: ChargeRequest<'a>) -> ChargeFuture<'a> {
        Box::pin(async move {
            tracing::info!(
                user_id = %request.user_id,
                tier = %request.plan.tier,
                amount_cents = request.plan.price_cents,
                currency = %request.plan.currency,
                "manual payment provider: charge approved"
            );
            Ok(Receipt {
                reference: format!("manual:{}", request.idempotency_key),
            })
        })
    }
}
