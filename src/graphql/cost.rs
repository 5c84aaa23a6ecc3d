//! What a GraphQL request costs, and each credential's budget of points per minute.
//!
//! A request's cost is its complexity: one point per field, and a paginated field (`tools`, `usage`,
//! `recentUsage`, the admin `users` and `auditLog`) counts its selection once per item of the page it
//! asks for (`first`, default 20), as GitHub's node limit does. A request over
//! `HUB_GRAPHQL_MAX_COMPLEXITY` is refused before it runs (`QUERY_TOO_COMPLEX`). Every signed-in
//! session's user and every API key has `HUB_QUERY_POINTS_PER_MINUTE` points a minute, over HTTP and
//! the WebSocket alike, paced like requests (`pacing`: a burst of a sixth of the minute's points,
//! shared by every instance); a request whose cost does not fit is refused before it runs
//! (`RATE_LIMITED` with `retryAfter`). Queries and mutations spend points, except a mutation that only
//! invokes tools: invocations are paced by the plan's and the key's call rates instead, which their
//! answers report. Subscriptions are bounded by the connection limits; anonymous callers are paced
//! per address (`http::anonymous_pace`). What a request cost and what is left are answered by
//! `rateLimit`, by `extensions.cost` when the request's extensions ask (`"cost": true`), and by the
//! `X-RateLimit-*` headers.

use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::parser::types::{OperationDefinition, OperationType, Selection};
use async_graphql::{Context, Object, ServerError, SimpleObject};
use chrono::{DateTime, Utc};

use super::limits::coded_error;
use crate::app::AppState;
use crate::auth::identity::Caller;
use crate::pacing::service as pacing;

/// Items a paginated field holds when `first` is not given.
const DEFAULT_PAGE: i32 = 20;
/// The most a paginated field may hold.
const MAX_PAGE: i32 = 100;

/// The complexity of a paginated field: its selection once per item asked for, plus one.
pub fn page(first: Option<i32>, child_complexity: usize) -> usize {
    let items = usize::try_from(first.unwrap_or(DEFAULT_PAGE).clamp(0, MAX_PAGE)).unwrap_or(0);
    items
        .max(1)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// A request's cost and where its credential's budget stands after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, SimpleObject, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Points a minute.
    pub limit: u32,
    /// Points that may be spent at once now.
    pub remaining: u64,
    /// When the whole burst is available again.
    pub reset_at: DateTime<Utc>,
    /// What this request cost.
    pub cost: u32,
}

/// Where [`spend`] leaves a request's [`RateLimit`]: in each HTTP request's data and each
/// WebSocket connection's (a request without one spends no points).
#[derive(Debug, Clone, Default)]
pub struct CostSlot {
    spent: Arc<Mutex<Option<RateLimit>>>,
}

impl CostSlot {
    pub fn get(&self) -> Option<RateLimit> {
        *self.spent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, rate_limit: RateLimit) {
        *self.spent.lock().unwrap_or_else(PoisonError::into_inner) = Some(rate_limit);
    }
}

/// Root mutation fields paced by call rates of their own rather than by points.
const PACED_ELSEWHERE: &[&str] = &["invokeTool"];

/// Whether `operation` spends points: a query does, a subscription does not, and a mutation does
/// unless every root field it selects is paced elsewhere.
pub fn spends_points(operation: &OperationDefinition) -> bool {
    match operation.ty {
        OperationType::Query => true,
        OperationType::Subscription => false,
        OperationType::Mutation => !operation.selection_set.node.items.iter().all(|item| {
            matches!(&item.node, Selection::Field(field)
                if PACED_ELSEWHERE.contains(&field.node.name.node.as_str())
                    || field.node.name.node == "__typename")
        }),
    }
}

/// Spends a validated request's cost, its complexity (at least a point: `{ __typename }` too), from
/// its caller's budget, and leaves where the budget stands in `slot`. Anonymous callers spend nothing
/// here (they are paced per address), nor does anyone when the budget is off.
pub async fn spend(
    app: &AppState,
    caller: &Caller,
    slot: &CostSlot,
    complexity: usize,
) -> Result<(), ServerError> {
    let per_minute = app.config.graphql.points_per_minute;
    let subject = match caller {
        Caller::User(user) => match user.api_key() {
            Some(key) => format!("points:key:{}", key.0),
            None => format!("points:user:{}", user.id.0),
        },
        Caller::Anonymous => return Ok(()),
    };
    if per_minute == 0 {
        return Ok(());
    }
    let cost = u32::try_from(complexity).unwrap_or(u32::MAX).max(1);
    let verdict = pacing::admit(app, subject, per_minute, cost)
        .await
        .map_err(|error| {
            async_graphql::Error::from(error).into_server_error(async_graphql::Pos::default())
        })?;
    slot.set(RateLimit {
        limit: per_minute,
        remaining: verdict.remaining,
        reset_at: Utc::now() + chrono::Duration::from_std(verdict.reset).unwrap_or_default(),
        cost,
    });
    if verdict.admitted {
        return Ok(());
    }
    let wait = verdict.retry_after.unwrap_or_default();
    let mut refusal = coded_error(
        format!(
            "This request costs {cost} points and the budget of {per_minute} points a minute has {} left; try again in a moment.",
            verdict.remaining
        ),
        "RATE_LIMITED",
    );
    if let Some(extensions) = refusal.extensions.as_mut() {
        extensions.set("retryAfter", wait.as_secs_f64().ceil().max(1.0) as u64);
    }
    Err(refusal)
}

/// The root field that reports a request's cost.
#[derive(Default)]
pub struct RateLimitQuery;

#[Object]
impl RateLimitQuery {
    /// What this query cost and what is left of the caller's points this minute; null for anonymous
    /// callers (paced per address instead).
    async fn rate_limit(&self, ctx: &Context<'_>) -> Option<RateLimit> {
        ctx.data_opt::<CostSlot>().and_then(CostSlot::get)
    }
}
