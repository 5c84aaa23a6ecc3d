//! Plans: the catalogue everyone reads, and the administrators' changes to it (audited in the same
//! transaction).

use diesel_async::AsyncConnection;

use super::model::{PlanChanges, PlanRow, PlanTier};
use super::repo;
use crate::app::AppState;
use crate::audit::service::{self as audit, Actor};
use crate::error::{AppError, AppResult};

/// Every plan, cheapest first.
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
    // Every entitlement may have changed: this instance forgets them at once, the others when the
    // trigger's notification arrives.
    app.caches.forget_entitlements();
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
