//! Queries on `usage_events` and `usage_daily`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{DailyTotal, Filter, LATENCY_BOUNDS_MS, UsageEvent, latency_bucket};
use crate::db::schema::usage_events;

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

/// The usage rows of a batch and their rollups, as columns (arrays) ready to bind, summed per rollup key
/// and sorted by it — so concurrent batches upsert rollup rows in the same order and cannot deadlock.
#[derive(Debug, Default)]
pub struct BatchColumns {
    pub events: EventColumns,
    pub daily: DailyColumns,
    pub platform: PlatformColumns,
}

#[derive(Debug, Default)]
pub struct EventColumns {
    pub id: Vec<Uuid>,
    pub user_id: Vec<Uuid>,
    pub api_key_id: Vec<Option<Uuid>>,
    pub tool_id: Vec<Uuid>,
    pub subscription_id: Vec<Option<Uuid>>,
    pub tokens_used: Vec<i64>,
    pub tokens_estimated: Vec<bool>,
    pub status: Vec<String>,
    pub error_code: Vec<Option<String>>,
    pub latency_ms: Vec<i32>,
    pub created_at: Vec<DateTime<Utc>>,
}

/// `usage_daily` increments per (user, day, tool).
#[derive(Debug, Default)]
pub struct DailyColumns {
    pub user_id: Vec<Uuid>,
    pub tool_id: Vec<Uuid>,
    pub day: Vec<NaiveDate>,
    pub invocations: Vec<i64>,
    pub tokens: Vec<i64>,
    pub errors: Vec<i64>,
    pub latency_ms_sum: Vec<i64>,
}

/// `platform_daily` increments per (day, tool, tier); histograms as `bigint[]` literals.
#[derive(Debug, Default)]
pub struct PlatformColumns {
    pub day: Vec<NaiveDate>,
    pub tool_id: Vec<Uuid>,
    pub tier: Vec<String>,
    pub invocations: Vec<i64>,
    pub errors: Vec<i64>,
    pub tokens: Vec<i64>,
    pub histogram: Vec<String>,
}

/// Columns for usage rows, each with the caller's plan tier at the time (`NONE` without).
pub fn batch_columns(events: &[(&UsageEvent, &str)]) -> BatchColumns {
    let mut columns = BatchColumns::default();
    let mut daily: BTreeMap<(Uuid, NaiveDate, Uuid), Totals> = BTreeMap::new();
    let mut platform: BTreeMap<(NaiveDate, Uuid, &str), Totals> = BTreeMap::new();
    for (event, tier) in events {
        let e = &mut columns.events;
        e.id.push(event.id);
        e.user_id.push(event.user_id);
        e.api_key_id.push(event.api_key_id);
        e.tool_id.push(event.tool_id);
        e.subscription_id.push(event.subscription_id);
        e.tokens_used.push(event.tokens_used);
        e.tokens_estimated.push(event.tokens_estimated);
        e.status.push(event.status.clone());
        e.error_code.push(event.error_code.clone());
        e.latency_ms.push(event.latency_ms);
        e.created_at.push(event.created_at);
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
    for ((user, day, tool), totals) in daily {
        let d = &mut columns.daily;
        d.user_id.push(user);
        d.day.push(day);
        d.tool_id.push(tool);
        d.invocations.push(totals.invocations);
        d.tokens.push(totals.tokens);
        d.errors.push(totals.errors);
        d.latency_ms_sum.push(totals.latency_ms_sum);
    }
    for ((day, tool, tier), totals) in platform {
        let p = &mut columns.platform;
        p.day.push(day);
        p.tool_id.push(tool);
        p.tier.push(tier.to_owned());
        p.invocations.push(totals.invocations);
        p.errors.push(totals.errors);
        p.tokens.push(totals.tokens);
        let cells: Vec<String> = totals.histogram.iter().map(ToString::to_string).collect();
        p.histogram.push(format!("{{{}}}", cells.join(",")));
    }
    columns
}

/// SQL (for a `WITH` list) that inserts the usage rows bound at `$4`–`$14`, the daily rollups at
/// `$15`–`$21` (with the users' activity days) and the platform rollups at `$22`–`$28` into shard
/// `$35`; see `gateway::meter`, which binds them in this order.
pub const RECORD_CTES: &str = "\
    events AS (INSERT INTO usage_events (id, user_id, api_key_id, tool_id, subscription_id, tokens_used, \
                                         tokens_estimated, status, error_code, latency_ms, created_at) \
               SELECT * FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[], $8::uuid[], $9::bigint[], \
                                    $10::boolean[], $11::text[], $12::text[], $13::integer[], $14::timestamptz[]) \
               RETURNING 1), \
    active AS (INSERT INTO user_activity (day, user_id) \
               SELECT DISTINCT d, u FROM unnest($15::uuid[], $17::date[]) AS a(u, d) ORDER BY d, u \
               ON CONFLICT DO NOTHING RETURNING 1), \
    daily AS (INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens, errors, latency_ms_sum) \
              SELECT * FROM unnest($15::uuid[], $16::uuid[], $17::date[], $18::bigint[], $19::bigint[], \
                                   $20::bigint[], $21::bigint[]) \
              ON CONFLICT (user_id, day, tool_id) DO UPDATE SET \
                invocations = usage_daily.invocations + EXCLUDED.invocations, \
                tokens = usage_daily.tokens + EXCLUDED.tokens, \
                errors = usage_daily.errors + EXCLUDED.errors, \
                latency_ms_sum = usage_daily.latency_ms_sum + EXCLUDED.latency_ms_sum \
              RETURNING 1), \
    platform AS (INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist) \
                 SELECT d, t, r, $35::smallint, n, e, k, h::bigint[] \
                 FROM unnest($22::date[], $23::uuid[], $24::text[], $25::bigint[], $26::bigint[], $27::bigint[], \
                             $28::text[]) AS v(d, t, r, n, e, k, h) \
                 ON CONFLICT (day, tool_id, tier, shard) DO UPDATE SET \
                   invocations = platform_daily.invocations + EXCLUDED.invocations, \
                   errors = platform_daily.errors + EXCLUDED.errors, \
                   tokens = platform_daily.tokens + EXCLUDED.tokens, \
                   latency_hist = ARRAY(SELECT a + b FROM unnest(platform_daily.latency_hist, EXCLUDED.latency_hist) \
                                        WITH ORDINALITY AS s(a, b, i) ORDER BY i) \
                 RETURNING 1)";

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
