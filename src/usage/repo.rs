//! Queries on `usage_events` and `usage_daily`.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{DailyTotal, UsageEvent};
use crate::db::schema::usage_events;

/// The channel live usage notifications travel on.
pub const CHANNEL: &str = "hub_usage";

/// Upper bounds (ms) of the latency histogram buckets in `platform_daily`; a last bucket takes the rest.
pub const LATENCY_BOUNDS_MS: [i32; 11] = [
    50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, 30_000,
];

/// The 1-based histogram bucket of a latency.
pub fn latency_bucket(latency_ms: i32) -> i32 {
    let index = LATENCY_BOUNDS_MS
        .iter()
        .position(|bound| latency_ms <= *bound)
        .unwrap_or(LATENCY_BOUNDS_MS.len());
    i32::try_from(index).unwrap_or(0) + 1
}

/// Writes a usage row, adds it to the user's and the platform's daily rollups, and queues its
/// notification — all in the caller's transaction, so the log, the rollups and the live feed agree (a
/// notification is delivered on commit). `tier` is the caller's plan tier at the time (`NONE` without).
pub async fn record(
    conn: &mut AsyncPgConnection,
    event: &UsageEvent,
    tier: &str,
) -> QueryResult<()> {
    diesel::insert_into(usage_events::table)
        .values(event)
        .execute(conn)
        .await?;
    diesel::sql_query(
        "WITH active AS (INSERT INTO user_activity (day, user_id) VALUES (($3 AT TIME ZONE 'UTC')::date, $1) ON CONFLICT DO NOTHING) \
         INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens, errors, latency_ms_sum) \
         VALUES ($1, $2, ($3 AT TIME ZONE 'UTC')::date, 1, $4, $5, $6) \
         ON CONFLICT (user_id, day, tool_id) DO UPDATE SET \
           invocations = usage_daily.invocations + 1, \
           tokens = usage_daily.tokens + EXCLUDED.tokens, \
           errors = usage_daily.errors + EXCLUDED.errors, \
           latency_ms_sum = usage_daily.latency_ms_sum + EXCLUDED.latency_ms_sum",
    )
    .bind::<SqlUuid, _>(event.user_id)
    .bind::<SqlUuid, _>(event.tool_id)
    .bind::<Timestamptz, _>(event.created_at)
    .bind::<BigInt, _>(event.tokens_used)
    .bind::<BigInt, _>(i64::from(event.status != "SUCCESS"))
    .bind::<BigInt, _>(i64::from(event.latency_ms))
    .execute(conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO platform_daily (day, tool_id, tier, invocations, errors, tokens, latency_hist) \
         VALUES (($1 AT TIME ZONE 'UTC')::date, $2, $3, 1, $4, $5, \
                 (SELECT array_agg(CASE WHEN i = $6 THEN 1 ELSE 0 END::bigint ORDER BY i) FROM generate_series(1, 12) AS i)) \
         ON CONFLICT (day, tool_id, tier) DO UPDATE SET \
           invocations = platform_daily.invocations + 1, \
           errors = platform_daily.errors + EXCLUDED.errors, \
           tokens = platform_daily.tokens + EXCLUDED.tokens, \
           latency_hist[$6] = platform_daily.latency_hist[$6] + 1",
    )
    .bind::<Timestamptz, _>(event.created_at)
    .bind::<SqlUuid, _>(event.tool_id)
    .bind::<diesel::sql_types::Text, _>(tier)
    .bind::<BigInt, _>(i64::from(event.status != "SUCCESS"))
    .bind::<BigInt, _>(event.tokens_used)
    .bind::<diesel::sql_types::Integer, _>(latency_bucket(event.latency_ms))
    .execute(conn)
    .await?;
    let payload = serde_json::to_string(event)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(CHANNEL)
        .bind::<diesel::sql_types::Text, _>(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// A filter on a user's log: `[from, to)` and an optional tool.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub user: Uuid,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub tool: Option<Uuid>,
}

fn filtered(filter: &Filter) -> usage_events::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = usage_events::table
        .filter(usage_events::user_id.eq(filter.user))
        .into_boxed();
    if let Some(from) = filter.from {
        query = query.filter(usage_events::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(usage_events::created_at.lt(to));
    }
    if let Some(tool) = filter.tool {
        query = query.filter(usage_events::tool_id.eq(tool));
    }
    query
}

/// One page, newest first, strictly after the `(created_at, id)` keyset cursor.
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<UsageEvent>> {
    let mut query = filtered(filter);
    if let Some((at, id)) = after {
        query = query.filter(
            usage_events::created_at
                .lt(at)
                .or(usage_events::created_at.eq(at).and(usage_events::id.lt(id))),
        );
    }
    query
        .order((usage_events::created_at.desc(), usage_events::id.desc()))
        .limit(limit)
        .select(UsageEvent::as_select())
        .load(conn)
        .await
}

pub async fn count(conn: &mut AsyncPgConnection, filter: &Filter) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn).await
}

/// Rollup totals per tool and day for whole days in `[from_day, to_day)`.
pub async fn daily_totals(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    from_day: Option<NaiveDate>,
    to_day: Option<NaiveDate>,
) -> QueryResult<Vec<DailyTotal>> {
    diesel::sql_query(
        "SELECT tool_id, day, invocations, tokens FROM usage_daily \
         WHERE user_id = $1 AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day < $3)",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Nullable<Date>, _>(from_day)
    .bind::<Nullable<Date>, _>(to_day)
    .load(conn)
    .await
}

/// Raw-log totals per tool and day for `[from, to)` (used for the partial days at a range's edges).
pub async fn raw_totals(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> QueryResult<Vec<DailyTotal>> {
    diesel::sql_query(
        "SELECT tool_id, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS invocations, \
         COALESCE(sum(tokens_used), 0)::bigint AS tokens FROM usage_events \
         WHERE user_id = $1 AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3) \
         GROUP BY 1, 2",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Nullable<Timestamptz>, _>(from)
    .bind::<Nullable<Timestamptz>, _>(to)
    .load(conn)
    .await
}

/// Deletes up to `batch` raw rows older than `before` (rollups stay); returns how many went.
pub async fn delete_older_than(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM usage_events WHERE id IN (SELECT id FROM usage_events WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
    )
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await
}

/// Platform totals per day, tool and tier in `[from_day, to_day)`.
#[derive(QueryableByName, Debug, Clone)]
pub struct PlatformDay {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = SqlUuid)]
    pub tool_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub tier: String,
    #[diesel(sql_type = BigInt)]
    pub invocations: i64,
    #[diesel(sql_type = BigInt)]
    pub errors: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
    pub latency_hist: Vec<i64>,
}

pub async fn platform_days(
    conn: &mut AsyncPgConnection,
    from_day: Option<NaiveDate>,
    to_day: Option<NaiveDate>,
) -> QueryResult<Vec<PlatformDay>> {
    diesel::sql_query(
        "SELECT day, tool_id, tier, invocations, errors, tokens, latency_hist FROM platform_daily \
         WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day < $2)",
    )
    .bind::<Nullable<Date>, _>(from_day)
    .bind::<Nullable<Date>, _>(to_day)
    .load(conn)
    .await
}

/// Distinct users with any usage in `[from_day, to_day)`.
pub async fn active_users(
    conn: &mut AsyncPgConnection,
    from_day: Option<NaiveDate>,
    to_day: Option<NaiveDate>,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM users u WHERE EXISTS (SELECT 1 FROM user_activity a WHERE a.user_id = u.id \
           AND ($1::date IS NULL OR a.day >= $1) AND ($2::date IS NULL OR a.day < $2))",
    )
    .bind::<Nullable<Date>, _>(from_day)
    .bind::<Nullable<Date>, _>(to_day)
    .get_result(conn)
    .await?;
    Ok(count.n)
}

#[cfg(test)]
mod tests {
    use super::latency_bucket;

    #[test]
    fn latencies_fall_in_their_histogram_bucket() {
        assert_eq!(latency_bucket(0), 1);
        assert_eq!(latency_bucket(50), 1);
        assert_eq!(latency_bucket(51), 2);
        assert_eq!(latency_bucket(30_000), 11);
        assert_eq!(latency_bucket(30_001), 12);
    }
}
