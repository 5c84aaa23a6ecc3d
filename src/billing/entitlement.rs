//! Calls that no limit constrains skip the reservation: a user whose plan has no token limit and no
//! enforced request rate, calling with a session or a key without limits of its own, reserves
//! nothing. The decision is made from the user's cached [`Entitlement`] (kept fresh by the
//! subscriptions' and plans' invalidation triggers), with the same rules as the reservation
//! statement: a subscription that is not expired, whose period (and grace, if a payment failed) runs
//! at billing's "now", on a plan that reaches the tool's tier. Anything else, including a period that
//! has ended and must roll forward, takes the reservation path. The call is settled like any other,
//! charging the subscription's used tokens; its reservation id names no row.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{Entitlement, PlanTier, Reservation};
use super::repo;
use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// What `entitlement` allows a call to a tool of `min_tier` at `now`, without a reservation.
pub fn allows(
    entitlement: &Entitlement,
    min_tier: PlanTier,
    now: DateTime<Utc>,
) -> Option<(Reservation, PlanTier)> {
    let allowed = entitlement.unlimited
        && entitlement.runs_until > now
        && entitlement.reaches.contains(&min_tier);
    allowed.then(|| {
        (
            Reservation::unheld(entitlement.subscription_id),
            entitlement.tier,
        )
    })
}

/// The user's entitlement (`None`: no current subscription), from the cache or the database.
pub async fn current(app: &AppState, user: Uuid) -> AppResult<Option<Entitlement>> {
    let found = app
        .caches
        .entitlements
        .get_or_load(user, async {
            let mut conn = app.pool.get().await?;
            let enforce_rates = app.config.gateway.enforce_request_rates;
            let found = repo::entitlement(&mut conn, user, enforce_rates).await?;
            Ok::<_, AppError>(Some(found))
        })
        .await?;
    Ok(found.flatten())
}
