use async_graphql::connection::{Connection, ConnectionNameType, Edge, EdgeNameType, EmptyFields};
use async_graphql::futures_util::{Stream, StreamExt};
use async_graphql::{ComplexObject, Context, ID, Object, OutputType, SimpleObject, Subscription};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::model::Filter;
use super::model::{InvocationStatus, UsageEvent};
use super::service;
use crate::error::AppError;
use crate::graphql::big_int::BigInt;
use crate::graphql::context::ContextExt;
use crate::graphql::cursor;
use crate::graphql::guards::Scoped;
use crate::graphql::loaders::Loaders;
use crate::keys::model::Scope;
use crate::tools::graphql::Tool;

/// One metered invocation.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct UsageEntry {
    pub id: ID,
    pub tokens_used: BigInt,
    /// True when the answer had no token count and an estimate was charged.
    pub tokens_estimated: bool,
    /// Tokens the upstream reported beyond what the call reserved: included in `tokensUsed` unless the
    /// call stated its maximum (`max_tokens`), which caps the charge at the reservation.
    pub tokens_overrun: BigInt,
    pub status: InvocationStatus,
    /// The error code when the invocation failed or was refused.
    pub error_code: Option<String>,
    pub latency_ms: i32,
    pub created_at: DateTime<Utc>,
    /// The API key that made the call; null when it came from a signed-in session.
    pub api_key_id: Option<ID>,
    #[graphql(skip)]
    pub tool_id: Uuid,
}

impl From<&UsageEvent> for UsageEntry {
    fn from(event: &UsageEvent) -> Self {
        Self {
            id: ID(event.id.to_string()),
            tokens_used: event.tokens_used.into(),
            tokens_estimated: event.tokens_estimated,
            tokens_overrun: event.tokens_overrun.into(),
            status: event.status,
            error_code: event.error_code.clone(),
            latency_ms: event.latency_ms,
            created_at: event.created_at,
            api_key_id: event.api_key_id.map(|id| ID(id.to_string())),
            tool_id: event.tool_id,
        }
    }
}

async fn load_tool(ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Tool> {
    let loaders = ctx.data::<Loaders>()?;
    let row = loaders
        .tools(ctx.app()?)
        .load_one(id)
        .await
        .map_err(|e| async_graphql::Error::new(e.as_str()))?
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("usage refers to a missing tool {id}"))
        })?;
    Ok(Tool::try_from(row)?)
}

#[ComplexObject]
impl UsageEntry {
    /// The tool that was invoked (loaded in one batch per page).
    async fn tool(&self, ctx: &Context<'_>) -> async_graphql::Result<Tool> {
        load_tool(ctx, self.tool_id).await
    }
}

/// Extra fields of the usage connection.
pub struct UsageConnectionFields {
    filter: Filter,
}

#[Object]
impl UsageConnectionFields {
    /// How many invocations match, over all pages (counted only when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<BigInt> {
        Ok(service::count(ctx.app()?, &self.filter).await?.into())
    }
}

/// A page of usage (Relay connection), named `UsageConnection` with `UsageEdge`s.
pub type UsageConnection = Connection<
    String,
    UsageEntry,
    UsageConnectionFields,
    EmptyFields,
    UsageConnectionName,
    UsageEdgeName,
>;

/// Names the usage connection after what it lists, not after its node type.
pub struct UsageConnectionName;

impl ConnectionNameType for UsageConnectionName {
    fn type_name<T: OutputType>() -> String {
        "UsageConnection".to_owned()
    }
}

/// Names the usage connection's edges to match [`UsageConnectionName`].
pub struct UsageEdgeName;

impl EdgeNameType for UsageEdgeName {
    fn type_name<T: OutputType>() -> String {
        "UsageEdge".to_owned()
    }
}

/// Tokens and invocations of one tool.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ToolUsage {
    pub tokens: BigInt,
    pub invocations: BigInt,
    #[graphql(skip)]
    pub tool_id: Uuid,
}

#[ComplexObject]
impl ToolUsage {
    async fn tool(&self, ctx: &Context<'_>) -> async_graphql::Result<Tool> {
        load_tool(ctx, self.tool_id).await
    }
}

/// Tokens and invocations of one day (UTC), for one user or the whole platform.
#[derive(SimpleObject)]
pub struct DayUsage {
    pub day: NaiveDate,
    pub tokens: BigInt,
    pub invocations: BigInt,
}

/// Totals over a range, and what is left of the current period.
#[derive(SimpleObject)]
pub struct UsageSummary {
    pub total_tokens: BigInt,
    pub total_invocations: BigInt,
    /// Per tool, most tokens first.
    pub by_tool: Vec<ToolUsage>,
    /// Per day, oldest first (days without usage are left out).
    pub by_day: Vec<DayUsage>,
    /// The current period's limit; null when unlimited or without a subscription.
    pub token_limit: Option<BigInt>,
    /// What is left this period; null when unlimited or without a subscription.
    pub tokens_remaining: Option<BigInt>,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// The caller's invocations, newest first, in `[from, to)`, optionally for one tool or the calls of
    /// one API key. Pages hold
    /// `first` entries (default 20, at most 100) after the cursor `after`.
    #[graphql(
        guard = "Scoped(Scope::Read)",
        complexity = "crate::graphql::cost::page(first, child_complexity)"
    )]
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is a filter or page argument of the contract"
    )]
    async fn usage(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        tool_id: Option<ID>,
        api_key_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<UsageConnection> {
        let user = ctx.user()?;
        let first = first.unwrap_or(20);
        if !(0..=100).contains(&first) {
            return Err(AppError::bad_input("first", "Ask for 0 to 100 entries at a time.").into());
        }
        let tool = match tool_id {
            Some(id) => Some(crate::graphql::ids::parse(&id, "toolId")?),
            None => None,
        };
        let api_key = match api_key_id {
            Some(id) => Some(crate::graphql::ids::parse(&id, "apiKeyId")?),
            None => None,
        };
        let after = after.as_deref().map(cursor::decode_time_id).transpose()?;
        let filter = Filter {
            user: user.id.0,
            from,
            to,
            tool,
            api_key,
        };
        let (rows, has_next) = service::page(ctx.app()?, &filter, after, i64::from(first)).await?;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            has_next,
            UsageConnectionFields { filter },
        );
        connection.edges.extend(rows.iter().map(|row| {
            Edge::new(
                cursor::encode_time_id(row.created_at, row.id),
                UsageEntry::from(row),
            )
        }));
        Ok(connection)
    }

    /// The caller's totals in `[from, to)` (all time when omitted) per tool and per day, exact and
    /// computed from daily rollups, plus the current period's limit and what is left of it.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn usage_summary(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<UsageSummary> {
        let user = ctx.user()?;
        let app = ctx.app()?;
        let (totals, subscription) = tokio::try_join!(
            service::summary_totals(app, user.id.0, from, to),
            crate::billing::service::current(app, user.id),
        )?;
        let mut by_tool: Vec<ToolUsage> = totals
            .iter()
            .filter_map(|total| {
                total.tool_id.map(|tool_id| ToolUsage {
                    tokens: total.tokens.into(),
                    invocations: total.invocations.into(),
                    tool_id,
                })
            })
            .collect();
        by_tool.sort_by(|a, b| b.tokens.cmp(&a.tokens).then(a.tool_id.cmp(&b.tool_id)));
        let mut by_day: Vec<DayUsage> = totals
            .iter()
            .filter_map(|total| {
                total.day.map(|day| DayUsage {
                    day,
                    tokens: total.tokens.into(),
                    invocations: total.invocations.into(),
                })
            })
            .collect();
        by_day.sort_by_key(|day| day.day);
        let by_days = totals.iter().filter(|total| total.day.is_some());
        let (total_tokens, total_invocations) = by_days.fold((0_i64, 0_i64), |(t, i), total| {
            (t + total.tokens, i + total.invocations)
        });
        Ok(UsageSummary {
            total_tokens: total_tokens.into(),
            total_invocations: total_invocations.into(),
            by_tool,
            by_day,
            token_limit: subscription
                .as_ref()
                .and_then(|s| s.plan.token_limit)
                .map(BigInt::from),
            tokens_remaining: subscription
                .as_ref()
                .and_then(|s| s.tokens_remaining())
                .map(BigInt::from),
            current_period_start: subscription.as_ref().map(|s| s.row.current_period_start),
            current_period_end: subscription.as_ref().map(|s| s.row.current_period_end),
        })
    }
}

#[derive(Default)]
pub struct UsageSubscription;

#[Subscription]
impl UsageSubscription {
    /// The caller's invocations as they are metered, from every server instance.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn usage_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = UsageEntry>> {
        let user = ctx.user()?.id.0;
        let events = ctx.app()?.live.stream();
        Ok(events.filter_map(move |event| async move {
            (event.user_id == user).then(|| UsageEntry::from(event.as_ref()))
        }))
    }
}
