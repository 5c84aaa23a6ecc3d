//! Administrators grant a plan until a date, for support and for companies paying by invoice: the
//! user's subscription moves to it at once with a period ending then, paid by `GRANT`. When the grant
//! ends, the subscription moves to the free plan (or expires when there is none); grants do not
//! renew. A subscription the provider billed stops being billed there at its period end. Works with or
//! without a provider; audited.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use uuid::Uuid;

use super::model::{EventKind, NewSubscription, PaidBy, PlanTier, SubscriptionStatus};
use super::payment::Payments;
use super::renewal::{fresh_period, record, roll_forward};
use super::repo;
use super::service::SubscriptionView;
use crate::app::AppState;
use crate::audit::service::{self as audit, Actor};
use crate::error::{AppError, AppResult};
use crate::users::model::UserId;

/// The longest a grant may run.
const MAX_GRANT_DAYS: i64 = 5 * 366;

#[tracing::instrument(skip_all, fields(user_id = %user.0, tier = tier.as_db()))]
pub async fn grant(
    app: &AppState,
    actor: &Actor,
    user: UserId,
    tier: PlanTier,
    until: DateTime<Utc>,
) -> AppResult<SubscriptionView> {
    let now = app.clock.now();
    if until <= now + chrono::Duration::minutes(1) {
        return Err(AppError::bad_input(
            "until",
            "A grant must end in the future.",
        ));
    }
    if until > now + chrono::Duration::days(MAX_GRANT_DAYS) {
        return Err(AppError::bad_input(
            "until",
            "A grant may run five years at most.",
        ));
    }
    if let Payments::Provider(provider) = &app.payments {
        let billed = {
            let mut conn = app.pool.get().await?;
            repo::current_with_plans(&mut conn, &[user.0]).await?.pop()
        }
        .and_then(|(row, _)| {
            row.provider_subscription_id
                .filter(|_| row.paid_by == PaidBy::Provider)
        });
        if let Some(billed) = billed {
            provider.cancel_at_period_end(&billed, true).await?;
        }
    }
    let mut conn = app.pool.get().await?;
    let view = conn
        .transaction::<_, AppError, _>(async |conn| {
            let plan = repo::find_plan(conn, tier).await?;
            let fallback = (tier != PlanTier::Free).then_some(PlanTier::Free);
            let current = match repo::lock_current_for_user(conn, user.0).await? {
                Some(row) => Some(roll_forward(conn, row, now).await?),
                None => None,
            }
            .filter(|row| row.status() != SubscriptionStatus::Expired);
            let (saved, from) = match current {
                None => {
                    let row = repo::insert_subscription(
                        conn,
                        NewSubscription {
                            id: Uuid::now_v7(),
                            user_id: user.0,
                            tier,
                            status: SubscriptionStatus::Active,
                            billing_anchor: now,
                            current_period_start: now,
                            current_period_end: until,
                            paid_by: PaidBy::Grant,
                            provider_subscription_id: None,
                            provider_event_at: None,
                        },
                    )
                    .await?;
                    (row, None)
                }
                Some(row) => {
                    let state = fresh_period(&row, tier, now, until, PaidBy::Grant);
                    repo::set_provider_subscription(conn, row.id, None).await?;
                    (repo::save_state(conn, row.id, state).await?, Some(row.tier))
                }
            };
            repo::set_scheduled_tier(conn, saved.id, fallback).await?;
            record(conn, &saved, EventKind::Granted, from, Some(tier), now).await?;
            audit::record_in(
                conn,
                actor,
                audit::Event {
                    action: "subscription.granted",
                    target_type: "subscription",
                    target_id: Some(saved.id.to_string()),
                    before: from.map(|tier| serde_json::json!({ "tier": tier })),
                    after: Some(
                        serde_json::json!({ "userId": user.0, "tier": tier, "until": until }),
                    ),
                },
            )
            .await?;
            let row = repo::lock_by_id(conn, saved.id).await?;
            Ok(SubscriptionView { row, plan })
        })
        .await;
    app.caches.invalidate_user(user.0);
    view
}
