//! Queries on `usage_events` and `usage_daily`.

use crate::db::cached::CachedExt;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Date, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
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

/// Sums of usage rows sharing a rollup key.
#[derive(Debug, Default)]
struct Totals {
    invocations: i64,
    tokens: i64,
    errors: i64,
    latency_ms_sum: i64,
    /// Counts per `latency_bucket` (1-based bucket `b` at index `b - 1`).
    histogram: [i64; LATENCY_BOUNDS_MS.len() + 1],
}

impl Totals {
    fn add(&mut self, event: &UsageEvent) {
        self.invocations += 1;
        self.tokens += event.tokens_used;
        self.errors += i64::from(event.status != "SUCCESS");
        self.latency_ms_sum += i64::from(event.latency_ms);
        let bucket = usize::try_from(latency_bucket(event.latency_ms) - 1).unwrap_or(0);
        if let Some(count) = self.histogram.get_mut(bucket) {
            *count += 1;
        }
    }
}

/// Writes usage rows, adds them to the users' and the platform's daily rollups, and queues their
/// notifications — all in the caller's transaction, so the log, the rollups and the live feed agree (a
/// notification is delivered on commit). Each row comes with the caller's plan tier at the time (`NONE`
/// without). The rollups are summed per key first and upserted in key order, so concurrent batches
/// lock rows in the same order and cannot deadlock on each other.
pub async fn record_batch(
    conn: &mut AsyncPgConnection,
    events: &[(&UsageEvent, &str)],
) -> QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    // One statement whatever the batch size (so it is prepared once): the rows travel as arrays.
    let rows = || events.iter().map(|(event, _)| *event);
    diesel::sql_query(
        "INSERT INTO usage_events (id, user_id, api_key_id, tool_id, subscription_id, tokens_used, \
                                   tokens_estimated, status, error_code, latency_ms, created_at) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bigint[], \
                              $7::boolean[], $8::text[], $9::text[], $10::integer[], $11::timestamptz[])",
    )
    .bind::<Array<SqlUuid>, _>(rows().map(|e| e.id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows().map(|e| e.user_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<SqlUuid>>, _>(rows().map(|e| e.api_key_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows().map(|e| e.tool_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<SqlUuid>>, _>(rows().map(|e| e.subscription_id).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(rows().map(|e| e.tokens_used).collect::<Vec<_>>())
    .bind::<Array<Bool>, _>(rows().map(|e| e.tokens_estimated).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows().map(|e| e.status.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows().map(|e| e.error_code.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(rows().map(|e| e.latency_ms).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(rows().map(|e| e.created_at).collect::<Vec<_>>())
    .cached()
    .execute(conn)
    .await?;

    let mut daily: BTreeMap<(Uuid, NaiveDate, Uuid), Totals> = BTreeMap::new();
    let mut platform: BTreeMap<(NaiveDate, Uuid, &str), Totals> = BTreeMap::new();
    for (event, tier) in events {
        let day = event.created_at.date_naive();
        daily
            .entry((event.user_id, day, event.tool_id))
            .or_default()
            .add(event);
        platform
            .entry((day, event.tool_id, tier))
            .or_default()
            .add(event);
    }

    let (mut users, mut tools, mut days) = (Vec::new(), Vec::new(), Vec::new());
    let (mut invocations, mut tokens, mut errors, mut latency) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((user, day, tool), totals) in &daily {
        users.push(*user);
        days.push(*day);
        tools.push(*tool);
        invocations.push(totals.invocations);
        tokens.push(totals.tokens);
        errors.push(totals.errors);
        latency.push(totals.latency_ms_sum);
    }
    diesel::sql_query(
        "WITH active AS (INSERT INTO user_activity (day, user_id) \
                         SELECT DISTINCT d, u FROM unnest($1::uuid[], $3::date[]) AS a(u, d) ORDER BY d, u \
                         ON CONFLICT DO NOTHING) \
         INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens, errors, latency_ms_sum) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) \
         ON CONFLICT (user_id, day, tool_id) DO UPDATE SET \
           invocations = usage_daily.invocations + EXCLUDED.invocations, \
           tokens = usage_daily.tokens + EXCLUDED.tokens, \
           errors = usage_daily.errors + EXCLUDED.errors, \
           latency_ms_sum = usage_daily.latency_ms_sum + EXCLUDED.latency_ms_sum",
    )
    .bind::<Array<SqlUuid>, _>(users)
    .bind::<Array<SqlUuid>, _>(tools)
    .bind::<Array<Date>, _>(days)
    .bind::<Array<BigInt>, _>(invocations)
    .bind::<Array<BigInt>, _>(tokens)
    .bind::<Array<BigInt>, _>(errors)
    .bind::<Array<BigInt>, _>(latency)
    .cached()
    .execute(conn)
    .await?;

    let (mut days, mut tools, mut tiers, mut invocations, mut errors, mut tokens, mut hists) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for ((day, tool, tier), totals) in &platform {
        days.push(*day);
        tools.push(*tool);
        tiers.push((*tier).to_owned());
        invocations.push(totals.invocations);
        errors.push(totals.errors);
        tokens.push(totals.tokens);
        let cells: Vec<String> = totals.histogram.iter().map(ToString::to_string).collect();
        hists.push(format!("{{{}}}", cells.join(",")));
    }
    diesel::sql_query(
        "INSERT INTO platform_daily (day, tool_id, tier, invocations, errors, tokens, latency_hist) \
         SELECT d, t, r, n, e, k, h::bigint[] \
         FROM unnest($1::date[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[]) \
              AS v(d, t, r, n, e, k, h) \
         ON CONFLICT (day, tool_id, tier) DO UPDATE SET \
           invocations = platform_daily.invocations + EXCLUDED.invocations, \
           errors = platform_daily.errors + EXCLUDED.errors, \
           tokens = platform_daily.tokens + EXCLUDED.tokens, \
           latency_hist = ARRAY(SELECT a + b FROM unnest(platform_daily.latency_hist, EXCLUDED.latency_hist) \
                                WITH ORDINALITY AS s(a, b, i) ORDER BY i)",
    )
    .bind::<Array<Date>, _>(days)
    .bind::<Array<SqlUuid>, _>(tools)
    .bind::<Array<Text>, _>(tiers)
    .bind::<Array<BigInt>, _>(invocations)
    .bind::<Array<BigInt>, _>(errors)
    .bind::<Array<BigInt>, _>(tokens)
    .bind::<Array<Text>, _>(hists)
    .cached()
    .execute(conn)
    .await?;

    let payloads = events
        .iter()
        .map(|(event, _)| serde_json::to_string(event))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query(
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS n(p, i) ORDER BY i",
    )
    .bind::<Text, _>(CHANNEL)
    .bind::<Array<Text>, _>(payloads)
    .cached()
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
    .cached()
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
    .cached()
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
    .cached()
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
    .cached()
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
    .cached()
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
