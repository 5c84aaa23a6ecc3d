//! The quota decision: whether a user may spend tokens on a tool of a given tier, and the reservation
//! that sets them aside. [`spend`] is the one entry point; tokens are reserved in one place only
//! (`reserve/`, through the batcher), and a request it does not grant is explained here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::batch::ReserveRequest;
pub use super::model::Pace;
use super::model::{Entitlement, PlanTier, Reservation, SubscriptionId};
use super::repo::{self, Reserved};
use super::service::{self, SubscriptionView};
use super::slices::{self, Lease, Rate};
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::users::model::UserId;

/// What a caller asks to spend.
#[derive(Debug, Clone, Copy)]
pub struct Spend {
    pub user: UserId,
    /// The lowest plan tier that may spend (the tool's).
    pub min_tier: PlanTier,
    /// The tokens to set aside (at least one is).
    pub tokens: i64,
    /// How long the reservation lasts if it is never settled.
    pub lease: Duration,
    /// The API key making the call when it has limits of its own, which apply too (`None` for a
    /// signed-in session or a key without limits: the statement then leaves the keys' work out).
    pub api_key: Option<Uuid>,
}

/// Tokens set aside, the plan tier they were granted on, and where the narrower of the plan's and the
/// key's request rates stands.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub reservation: Reservation,
    pub tier: PlanTier,
    /// `None` when the plan has no request rate (or rates are not enforced).
    pub pace: Option<Pace>,
}

/// Why billing refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user's plan (Free without a subscription) ranks below the tier asked for.
    PlanTooLow { needed: PlanTier },
    /// The plan would reach, but the user has no current subscription.
    NoSubscription,
    /// Over the plan's request rate; one request will be admitted after `retry_after`.
    RateLimited {
        requests_per_minute: u32,
        retry_after: Duration,
    },
    /// Over the API key's own request rate.
    KeyRateLimited {
        requests_per_minute: u32,
        retry_after: Duration,
    },
    /// The tokens asked do not fit what is left of the API key's own budget this period.
    KeyBudgetExceeded { asked: i64, budget: i64, left: i64 },
    /// The tokens asked do not fit what is left of the period.
    QuotaExceeded {
        asked: i64,
        remaining: i64,
        plan_name: String,
        renews_at: DateTime<Utc>,
    },
}

/// A refusal, with the subscription it concerns (if any) for the record.
#[derive(Debug, Clone)]
pub struct Refused {
    pub refusal: Refusal,
    pub subscription: Option<SubscriptionId>,
    pub tier: Option<PlanTier>,
}

impl Refused {
    /// The error a caller sees; `what` names the thing spent on ("the Echo tool").
    pub fn into_error(self, what: &str) -> AppError {
        match self.refusal {
            Refusal::PlanTooLow { needed } => AppError::PlanRequired(format!(
                "{what} needs the {} plan or higher.",
                needed.as_db()
            )),
            Refusal::NoSubscription => AppError::SubscriptionRequired(
                "Subscribe to a plan to use tools (the Free plan will do).".into(),
            ),
            Refusal::RateLimited {
                requests_per_minute,
                retry_after,
            } => AppError::RateLimited {
                message: format!(
                    "Your plan allows {requests_per_minute} calls per minute; try again in a moment."
                ),
                retry_after: whole_seconds(retry_after),
            },
            Refusal::KeyRateLimited {
                requests_per_minute,
                retry_after,
            } => AppError::RateLimited {
                message: format!(
                    "This API key allows {requests_per_minute} calls per minute; try again in a moment."
                ),
                retry_after: whole_seconds(retry_after),
            },
            Refusal::KeyBudgetExceeded {
                asked,
                budget,
                left,
            } => AppError::QuotaExceeded(format!(
                "This call may use up to {asked} tokens, but this API key's budget of {budget} tokens per period has {left} left."
            )),
            Refusal::QuotaExceeded {
                asked,
                remaining,
                plan_name,
                renews_at,
            } => AppError::QuotaExceeded(format!(
                "This call may use up to {asked} tokens, but your {plan_name} plan has {remaining} left this period (it renews on {}).",
                renews_at.format("%Y-%m-%d")
            )),
        }
    }
}

/// Decides and reserves: a [`Grant`] when the user's plan reaches `min_tier` and the tokens fit, else
/// the [`Refused`] reason. Concurrent callers on any number of server instances never reserve more
/// than the limit together (the reservation is serialised on the subscription row).
///
/// A call that no limit constrains reserves nothing (`entitlement`); one that its user's slice covers
/// draws on it (`slices`). Otherwise the common case takes one statement, shared with the requests
/// that arrive at the same moment (asking for a slice when the user is busy). When it declines, a
/// period that ended is rolled forward and the reservation tried once more; a request still declined
/// is explained from the subscription as it stands. Calls by a key with limits of its own always take
/// the statement.
#[tracing::instrument(skip_all, fields(user_id = %request.user.0, tokens = request.tokens))]
pub async fn spend(app: &AppState, request: Spend) -> AppResult<Result<Grant, Refused>> {
    let entitlement = match request.api_key {
        Some(_) => None,
        None => super::entitlement::current(app, request.user.0).await?,
    };
    let answer = match &entitlement {
        Some(entitlement) => match from_memory(app, &request, entitlement).await? {
            Ok(grant) => return Ok(Ok(grant)),
            Err(answer) => answer,
        },
        None => None,
    };
    let answer = match answer {
        Some(answer) => answer,
        None => reserve(app, &request, None).await?.0,
    };
    if let Some(decided) = answer.decided() {
        return Ok(decided);
    }
    if let Some(entitlement) = &entitlement
        && let Some(decided) = retry_without_slices(app, &request, entitlement).await?
    {
        return Ok(decided);
    }
    let subscription = service::current(app, request.user).await?;
    let refused = explain(app, &request, subscription.as_ref()).await?;
    let Some(refused) = refused else {
        // It fits now (a period rolled forward, or tokens came back in between): ask once more.
        if let Some(decided) = reserve(app, &request, None).await?.0.decided() {
            return Ok(decided);
        }
        let subscription = service::current(app, request.user).await?;
        return Ok(Err(explain(app, &request, subscription.as_ref())
            .await?
            .unwrap_or_else(|| {
                quota_exceeded(&request, subscription.as_ref())
            })));
    };
    Ok(Err(refused))
}

/// What the reservation statement answered for one request.
enum Answer {
    Granted(Grant),
    /// Over the plan's or the key's rate, or the key's budget: nothing reserved, nothing counted.
    OverLimit(Refused),
    /// Not granted for a reason [`explain`] finds.
    Declined,
}

impl Answer {
    /// The outcome, unless it takes [`explain`] to find.
    fn decided(self) -> Option<Result<Grant, Refused>> {
        match self {
            Self::Granted(grant) => Some(Ok(grant)),
            Self::OverLimit(refused) => Some(Err(refused)),
            Self::Declined => None,
        }
    }
}

/// A grant without a round trip: nothing to reserve, or a draw on the user's slice. Else the
/// statement's answer when the call asked it for a slice (the slice is recorded), or `None` when the
/// call is left to ask the statement as any other.
async fn from_memory(
    app: &AppState,
    request: &Spend,
    entitlement: &Entitlement,
) -> AppResult<Result<Grant, Option<Answer>>> {
    let now = app.clock.now();
    if let Some((reservation, tier)) =
        super::entitlement::allows(entitlement, request.min_tier, now)
    {
        return Ok(Ok(Grant {
            reservation,
            tier,
            pace: None,
        }));
    }
    let slice = app.token_slices.of(request.user.0);
    let mut slice = slice.lock().await;
    let expires_at = crate::clock::after(now, request.lease);
    if let Some(drawn) = slice.draw(
        request.tokens,
        request.min_tier,
        expires_at,
        now,
        entitlement,
    ) {
        return Ok(Ok(Grant {
            reservation: drawn.reservation,
            tier: drawn.tier,
            pace: drawn.pace,
        }));
    }
    let calls = slice.next_ask();
    if calls == 0 {
        return Ok(Err(None));
    }
    let (answer, lease) = match reserve(app, request, Some((calls, entitlement))).await {
        Ok(answered) => answered,
        Err(error) => {
            slice.leased(None);
            return Err(error);
        }
    };
    if let Some(owed) = slice.leased(lease) {
        app.token_slices.owe(owed);
    }
    Ok(Err(Some(answer)))
}

/// For a call that was declined: gives back at once what this instance's slices of the user's
/// subscription hold unspent (near the limit, nothing stays set aside in memory) and, if there was
/// any, asks again. Both happen under the user's slice, so no slice is leased in between, and the
/// next calls reserve exactly for a while (`slices::QUICK`).
async fn retry_without_slices(
    app: &AppState,
    request: &Spend,
    entitlement: &Entitlement,
) -> AppResult<Option<Result<Grant, Refused>>> {
    let slice = app.token_slices.of(request.user.0);
    let mut slice = slice.lock().await;
    let mut owed = app.token_slices.take_owed_of(entitlement.subscription_id);
    owed.extend(slice.leased(None));
    if owed.is_empty() {
        return Ok(None);
    }
    {
        let mut conn = app.pool.get().await?;
        repo::give_back_slices(&mut conn, &owed).await?;
    }
    Ok(reserve(app, request, None).await?.0.decided())
}

/// Runs the request through the reservation batcher, asking for a slice of `calls` more like it
/// when `sliced` says so (with the entitlement it is asked under); the answer, and the slice granted.
async fn reserve(
    app: &AppState,
    request: &Spend,
    sliced: Option<(u32, &Entitlement)>,
) -> AppResult<(Answer, Option<Lease>)> {
    let tokens = request.tokens.max(1);
    let now = app.clock.now();
    let expires_at = crate::clock::after(now, request.lease);
    let (slice_tokens, slice_requests) = sliced.map_or((0, 0), |(calls, entitlement)| {
        let tokens = if entitlement.token_limited {
            tokens.saturating_mul(i64::from(calls))
        } else {
            0
        };
        (tokens, i32::try_from(calls).unwrap_or(i32::MAX))
    });
    let id = Uuid::now_v7();
    let reserved = app
        .reservations
        .submit(ReserveRequest {
            id,
            user: request.user.0,
            tokens,
            now,
            expires_at,
            min_tier: request.min_tier,
            api_key: request.api_key,
            slice_tokens,
            slice_requests,
        })
        .await?;
    let Some(reserved) = reserved else {
        return Ok((Answer::Declined, None));
    };
    let answer = answer(&reserved, tokens, id);
    let lease = sliced.and_then(|(_, entitlement)| {
        // Calls leased later draw on the slice for a while: its row outlives them (`reserve/`).
        granted_slice(&reserved, entitlement, now, expires_at + slices::DRAWING)
    });
    Ok((answer, lease))
}

/// The slice `reserved` granted beyond its request, if any.
fn granted_slice(
    reserved: &Reserved,
    entitlement: &Entitlement,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Option<Lease> {
    let requests = u32::try_from(reserved.slice_requests).unwrap_or(0);
    if !reserved.granted || (reserved.slice_tokens <= 0 && requests == 0) {
        return None;
    }
    let rate = reserved
        .requests_per_minute
        .and_then(|r| u32::try_from(r).ok())
        .map(|requests_per_minute| {
            let every = 60_000.0 / f64::from(requests_per_minute.max(1));
            let full_in_ms = reserved.full_in_ms.unwrap_or(0) as f64 + f64::from(requests) * every;
            Rate {
                requests,
                requests_per_minute,
                shared_left: u32::try_from(reserved.burst_left.unwrap_or(0))
                    .unwrap_or(0)
                    .saturating_sub(requests),
                shared_full_in: Duration::from_millis(full_in_ms.max(0.0) as u64),
            }
        });
    Some(Lease {
        row: reserved.id,
        subscription_id: reserved.subscription_id,
        tier: reserved.tier,
        entitlement: entitlement.loaded,
        leased_at: now,
        expires_at,
        tokens: entitlement
            .token_limited
            .then_some(reserved.slice_tokens.max(0)),
        rate,
    })
}

/// What the statement's row for a request of `tokens` reserved as `id` means.
fn answer(reserved: &Reserved, tokens: i64, id: Uuid) -> Answer {
    let refused = |refusal| {
        Answer::OverLimit(Refused {
            refusal,
            subscription: Some(SubscriptionId(reserved.subscription_id)),
            tier: Some(reserved.tier),
        })
    };
    let key_rate = reserved
        .key_requests_per_minute
        .and_then(|r| u32::try_from(r).ok());
    if let (Some(requests_per_minute), Some(retry_in_ms)) = (key_rate, reserved.key_retry_in_ms) {
        return refused(Refusal::KeyRateLimited {
            requests_per_minute,
            retry_after: millis(retry_in_ms),
        });
    }
    if reserved.key_over_budget == Some(true) {
        return refused(Refusal::KeyBudgetExceeded {
            asked: tokens,
            budget: reserved.key_token_budget.unwrap_or(0),
            left: reserved.key_tokens_left.unwrap_or(0),
        });
    }
    let plan_rate = reserved
        .requests_per_minute
        .and_then(|r| u32::try_from(r).ok());
    if let (Some(requests_per_minute), Some(retry_in_ms)) = (plan_rate, reserved.retry_in_ms) {
        return refused(Refusal::RateLimited {
            requests_per_minute,
            retry_after: millis(retry_in_ms),
        });
    }
    if !reserved.granted {
        return Answer::Declined;
    }
    let pace = |rate: Option<u32>, left: Option<i32>, full_in: Option<i64>| {
        rate.map(|requests_per_minute| Pace {
            requests_per_minute,
            burst_left: left.and_then(|left| u32::try_from(left).ok()).unwrap_or(0),
            full_in: millis(full_in.unwrap_or(0)),
        })
    };
    let plan_pace = pace(plan_rate, reserved.burst_left, reserved.full_in_ms);
    let key_pace = pace(key_rate, reserved.key_burst_left, reserved.key_full_in_ms);
    let pace = match (plan_pace, key_pace) {
        (Some(plan), Some(key)) if key.burst_left < plan.burst_left => Some(key),
        (None, key) => key,
        (plan, _) => plan,
    };
    Answer::Granted(Grant {
        reservation: Reservation {
            id,
            subscription_id: reserved.subscription_id,
            tokens,
        },
        tier: reserved.tier,
        pace,
    })
}

fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Why the request would be refused by the subscription as it stands, or `None` when it would fit.
async fn explain(
    app: &AppState,
    request: &Spend,
    subscription: Option<&SubscriptionView>,
) -> AppResult<Option<Refused>> {
    let plans = {
        let mut conn = app.pool.get().await?;
        repo::list_plans(&mut conn).await?
    };
    let rank_of = |tier: PlanTier| plans.iter().find(|p| p.tier == tier).map(|p| p.rank);
    let have = subscription.map_or_else(|| rank_of(PlanTier::Free), |s| Some(s.plan.rank));
    let reaches =
        matches!((have, rank_of(request.min_tier)), (Some(have), Some(need)) if have >= need);
    let refusal = if !reaches {
        Some(Refusal::PlanTooLow {
            needed: request.min_tier,
        })
    } else if subscription.is_none() {
        Some(Refusal::NoSubscription)
    } else {
        return Ok(subscription
            .and_then(|s| s.tokens_remaining())
            .filter(|remaining| request.tokens.max(1) > *remaining)
            .map(|_| quota_exceeded(request, subscription)));
    };
    Ok(refusal.map(|refusal| refused(refusal, subscription)))
}

fn quota_exceeded(request: &Spend, subscription: Option<&SubscriptionView>) -> Refused {
    let refusal = Refusal::QuotaExceeded {
        asked: request.tokens.max(1),
        remaining: subscription
            .and_then(SubscriptionView::tokens_remaining)
            .unwrap_or(0),
        plan_name: subscription.map_or_else(String::new, |s| s.plan.name.clone()),
        renews_at: subscription.map_or_else(Utc::now, |s| s.row.current_period_end),
    };
    refused(refusal, subscription)
}

fn refused(refusal: Refusal, subscription: Option<&SubscriptionView>) -> Refused {
    Refused {
        refusal,
        subscription: subscription.map(|s| SubscriptionId(s.row.id)),
        tier: subscription.map(|s| s.row.tier),
    }
}
