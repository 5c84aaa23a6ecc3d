//! What a GraphQL request costs, and each credential's budget of points per minute.
//!
//! A request's cost is its complexity: one point per field, and a paginated field (`tools`, `usage`,
//! `recentUsage`, the admin `users` and `auditLog`) counts its selection once per item of the page it
//! asks for (`first`, default 20), as GitHub's node limit does. A request over
//! `HUB_GRAPHQL_MAX_COMPLEXITY` is refused before it runs (`QUERY_TOO_COMPLEX`). Every signed-in
//! session's user and every API key has `HUB_QUERY_POINTS_PER_MINUTE` points a minute for queries over
//! HTTP, paced like requests (`pacing`: a burst of a sixth of the minute's points, shared by every
//! instance); a query whose cost does not fit is refused before it runs (`RATE_LIMITED` with
//! `retryAfter`). Mutations are limited by rules of their own (invocations by the plan's and the key's
//! call rates, account actions by throttles) and spend no points; subscriptions are bounded by the
//! connection limits. What a query cost and what is left are answered by `rateLimit`, by
//! `extensions.cost` when the request's extensions ask (`"cost": true`), and by the `X-RateLimit-*`
//! headers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
    NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{
    Context, Object, Request, ServerError, ServerResult, SimpleObject, ValidationResult, Variables,
};
use chrono::{DateTime, Utc};

use super::context::RequestContext;
use super::limits::coded_error;
use super::operation::selected_operation;
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

/// Where the extension leaves a query's [`RateLimit`]: inserted into each HTTP request's data (a
/// request without one spends no points).
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

/// Installs [`BudgetExtension`] on a schema.
pub struct QueryBudget;

impl ExtensionFactory for QueryBudget {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(BudgetExtension::default())
    }
}

/// Spends a validated query's cost from its credential's budget before it runs. One per request: it
/// keeps the operation name it is asked for and whether that operation is a query.
#[derive(Default)]
pub struct BudgetExtension {
    operation_name: Mutex<Option<String>>,
    is_query: AtomicBool,
}

#[async_graphql::async_trait::async_trait]
impl Extension for BudgetExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *self
            .operation_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let name = self
            .operation_name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let is_query = selected_operation(&document, name.as_deref())
            .is_some_and(|(_, op)| op.node.ty == OperationType::Query);
        self.is_query.store(is_query, Ordering::Relaxed);
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let (Some(app), Some(request), Some(slot)) = (
            ctx.data_opt::<AppState>(),
            ctx.data_opt::<RequestContext>(),
            ctx.data_opt::<CostSlot>()
                .filter(|_| self.is_query.load(Ordering::Relaxed)),
        ) else {
            return Ok(result);
        };
        let per_minute = app.config.graphql.points_per_minute;
        let subject = match &request.caller {
            Caller::User(user) => match user.api_key() {
                Some(key) => format!("points:key:{}", key.0),
                None => format!("points:user:{}", user.id.0),
            },
            Caller::Anonymous => return Ok(result),
        };
        if per_minute == 0 {
            return Ok(result);
        }
        let cost = u32::try_from(result.complexity).unwrap_or(u32::MAX);
        let verdict = pacing::admit(app, subject, per_minute, cost)
            .await
            .map_err(|error| {
                vec![
                    async_graphql::Error::from(error)
                        .into_server_error(async_graphql::Pos::default()),
                ]
            })?;
        let rate_limit = RateLimit {
            limit: per_minute,
            remaining: verdict.remaining,
            reset_at: Utc::now() + chrono::Duration::from_std(verdict.reset).unwrap_or_default(),
            cost,
        };
        slot.set(rate_limit);
        if verdict.admitted {
            return Ok(result);
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
        Err(vec![refusal])
    }
}

/// The root field that reports a request's cost.
#[derive(Default)]
pub struct RateLimitQuery;

#[Object]
impl RateLimitQuery {
    /// What this query cost and what is left of the caller's points this minute; null for anonymous
    /// callers (paced per address instead) and in mutations (which spend no points).
    async fn rate_limit(&self, ctx: &Context<'_>) -> Option<RateLimit> {
        ctx.data_opt::<CostSlot>().and_then(CostSlot::get)
    }
}
