//! Platform statistics from the rollups (never the raw log), so they stay fast at any log size.

use std::collections::BTreeMap;

use async_graphql::{ComplexObject, Context, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::AppResult;
use crate::graphql::big_int::BigInt;
use crate::graphql::context::ContextExt;
use crate::graphql::loaders::Loaders;
use crate::tools::graphql::Tool;
use crate::usage::graphql::DayUsage;
use crate::usage::model::LATENCY_BOUNDS_MS;

/// Accounts.
#[derive(SimpleObject)]
pub struct UserStats {
    pub total: BigInt,
    /// Created in the range.
    pub new: BigInt,
    /// With at least one invocation in the range.
    pub active: BigInt,
}

/// One tool's figures.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ToolStats {
    pub invocations: BigInt,
    pub tokens: BigInt,
    pub errors: BigInt,
    /// Errors / invocations, 0 to 1.
    pub error_rate: f64,
    /// The 95th percentile latency, as the upper bound of its histogram bucket (ms); null when above 30 s.
    pub p95_latency_ms: Option<i32>,
    #[graphql(skip)]
    pub tool_id: Uuid,
}

#[ComplexObject]
impl ToolStats {
    async fn tool(&self, ctx: &Context<'_>) -> async_graphql::Result<Tool> {
        let row = ctx
            .data::<Loaders>()?
            .tools(ctx.app()?)
            .load_one(self.tool_id)
            .await
            .map_err(|e| async_graphql::Error::new(e.as_str()))?
            .ok_or_else(|| async_graphql::Error::new("missing tool"))?;
        Ok(Tool::try_from(row)?)
    }
}

/// One plan tier's usage (`NONE`: calls refused for lack of a subscription).
#[derive(SimpleObject)]
pub struct TierUsage {
    pub tier: String,
    pub invocations: BigInt,
    pub tokens: BigInt,
}

/// Current subscriptions of one tier.
#[derive(SimpleObject)]
pub struct TierSubscriptions {
    pub tier: String,
    pub active: BigInt,
    /// Cancelled, running until the period end.
    pub cancelled: BigInt,
}

/// An amount of money.
#[derive(SimpleObject)]
pub struct Money {
    pub currency: String,
    pub amount_cents: BigInt,
}

/// Platform statistics for a range of whole days (UTC).
#[derive(SimpleObject)]
pub struct PlatformStats {
    pub users: UserStats,
    pub invocations: BigInt,
    pub tokens: BigInt,
    pub error_rate: f64,
    /// Per tool, most invocations first.
    pub by_tool: Vec<ToolStats>,
    pub by_day: Vec<DayUsage>,
    pub by_tier: Vec<TierUsage>,
    pub subscriptions: Vec<TierSubscriptions>,
    /// Monthly recurring revenue, per currency: the plan prices of the subscriptions that pay now
    /// (active and paid through the provider or the manual one; not granted, past due or cancelled).
    pub monthly_recurring_revenue: Vec<Money>,
}

fn rate(errors: i64, invocations: i64) -> f64 {
    if invocations == 0 {
        0.0
    } else {
        errors as f64 / invocations as f64
    }
}

/// The upper bound of the bucket holding the 95th percentile.
pub fn p95(histogram: &[i64]) -> Option<i32> {
    let total: i64 = histogram.iter().sum();
    if total == 0 {
        return Some(0);
    }
    let target = (total * 95 + 99) / 100;
    let mut seen = 0;
    for (index, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= target {
            return LATENCY_BOUNDS_MS.get(index).copied();
        }
    }
    None
}

pub async fn compute(
    app: &AppState,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> AppResult<PlatformStats> {
    crate::usage::service::check_range(from, to)?;
    let from_day = from.map(|f| f.date_naive());
    // A range ending mid-day includes that day.
    let to_day = to.map(|t| {
        let day = t.date_naive();
        if t == day.and_hms_opt(0, 0, 0).map_or(t, |d| d.and_utc()) {
            day
        } else {
            day.succ_opt().unwrap_or(day)
        }
    });
    // Each from its owner, all at once.
    let (usage, (total_users, new_users), tiers) = tokio::try_join!(
        crate::usage::service::platform(app, from_day, to_day),
        crate::users::service::counts(app, from, to),
        crate::billing::service::tier_counts(app),
    )?;

    let mut by_tool: BTreeMap<Uuid, (i64, i64, i64, Vec<i64>)> = BTreeMap::new();
    let mut by_tier: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let (mut invocations, mut tokens, mut errors) = (0, 0, 0);
    for rollup in &usage.rollups {
        let tool = by_tool
            .entry(rollup.tool_id)
            .or_insert_with(|| (0, 0, 0, vec![0; 12]));
        tool.0 += rollup.invocations;
        tool.1 += rollup.tokens;
        tool.2 += rollup.errors;
        for (sum, count) in tool.3.iter_mut().zip(&rollup.latency_hist) {
            *sum += count;
        }
        let tier = by_tier.entry(rollup.tier.clone()).or_default();
        tier.0 += rollup.invocations;
        tier.1 += rollup.tokens;
        invocations += rollup.invocations;
        tokens += rollup.tokens;
        errors += rollup.errors;
    }
    let mut by_tool: Vec<ToolStats> = by_tool
        .into_iter()
        .map(
            |(tool_id, (invocations, tokens, errors, histogram))| ToolStats {
                invocations: invocations.into(),
                tokens: tokens.into(),
                errors: errors.into(),
                error_rate: rate(errors, invocations),
                p95_latency_ms: p95(&histogram),
                tool_id,
            },
        )
        .collect();
    by_tool.sort_by(|a, b| {
        b.invocations
            .cmp(&a.invocations)
            .then(a.tool_id.cmp(&b.tool_id))
    });

    let mut subscriptions: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut revenue: BTreeMap<String, i64> = BTreeMap::new();
    for count in &tiers {
        let entry = subscriptions.entry(count.tier.to_string()).or_default();
        if count.status == crate::billing::model::SubscriptionStatus::Cancelled {
            entry.1 += count.subscriptions;
        } else {
            entry.0 += count.subscriptions;
            let paid = if count.paying { count.price_cents } else { 0 };
            *revenue.entry(count.currency.clone()).or_default() += count.subscriptions * paid;
        }
    }
    Ok(PlatformStats {
        users: UserStats {
            total: total_users.into(),
            new: new_users.into(),
            active: usage.active_users.into(),
        },
        invocations: invocations.into(),
        tokens: tokens.into(),
        error_rate: rate(errors, invocations),
        by_tool,
        by_day: usage
            .days
            .into_iter()
            .map(|day| DayUsage {
                day: day.day,
                invocations: day.invocations.into(),
                tokens: day.tokens.into(),
            })
            .collect(),
        by_tier: by_tier
            .into_iter()
            .map(|(tier, (invocations, tokens))| TierUsage {
                tier,
                invocations: invocations.into(),
                tokens: tokens.into(),
            })
            .collect(),
        subscriptions: subscriptions
            .into_iter()
            .map(|(tier, (active, cancelled))| TierSubscriptions {
                tier,
                active: active.into(),
                cancelled: cancelled.into(),
            })
            .collect(),
        monthly_recurring_revenue: revenue
            .into_iter()
            .map(|(currency, amount_cents)| Money {
                currency,
                amount_cents: amount_cents.into(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::p95;

    #[test]
    fn the_95th_percentile_is_the_bound_of_its_bucket() {
        let mut histogram = vec![0; 12];
        histogram[0] = 90;
        histogram[3] = 10;
        assert_eq!(p95(&histogram), Some(300));
        assert_eq!(p95(&[0; 12]), Some(0));
        let mut slow = vec![0; 12];
        slow[11] = 1;
        assert_eq!(p95(&slow), None);
    }
}
