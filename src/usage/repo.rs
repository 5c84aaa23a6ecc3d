//! Queries on `usage_events` and the user rollups (`usage_daily`, `usage_monthly`, `usage_day_totals`).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Date, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{Filter, SummaryTotal, UsageEvent};
use crate::billing::model::PlanTier;
use crate::db::cached::CachedExt;
use crate::db::compose::{Composed, Part};
use crate::db::schema::usage_events;

/// The usage rows of a batch as columns (arrays) ready to bind.
#[derive(Debug, Default)]
pub struct EventColumns {
    pub id: Vec<Uuid>,
    pub user_id: Vec<Uuid>,
    pub api_key_id: Vec<Option<Uuid>>,
    pub tool_id: Vec<Uuid>,
    pub subscription_id: Vec<Option<Uuid>>,
    pub tokens_used: Vec<i64>,
    pub tokens_estimated: Vec<bool>,
    pub status: Vec<&'static str>,
    pub error_code: Vec<Option<String>>,
    pub latency_ms: Vec<i32>,
    pub created_at: Vec<DateTime<Utc>>,
    pub tokens_overrun: Vec<i64>,
    pub tier: Vec<&'static str>,
}

/// How the usage log and the platform rollup spell "no plan": invocations refused for want of a
/// subscription.
pub const NO_PLAN: &str = "NONE";

/// Columns for usage rows, each with the caller's plan tier at the time (`None` without).
pub fn event_columns(events: &[(&UsageEvent, Option<PlanTier>)]) -> EventColumns {
    let mut e = EventColumns::default();
    for (event, tier) in events {
        e.id.push(event.id);
        e.user_id.push(event.user_id);
        e.api_key_id.push(event.api_key_id);
        e.tool_id.push(event.tool_id);
        e.subscription_id.push(event.subscription_id);
        e.tokens_used.push(event.tokens_used);
        e.tokens_estimated.push(event.tokens_estimated);
        e.status.push(event.status.as_db());
        e.error_code.push(event.error_code.clone());
        e.latency_ms.push(event.latency_ms);
        e.created_at.push(event.created_at);
        e.tokens_overrun.push(event.tokens_overrun);
        e.tier.push(tier.map_or(NO_PLAN, PlanTier::as_db));
    }
    e
}

/// `record_batch.sql`: a part of the meter's statement (see `db::compose`).
pub const RECORD_BATCH: Part = Part::new(include_str!("record_batch.sql"), 13);

/// Binds [`RECORD_BATCH`]'s parameters: the batch's rows.
pub fn bind_record_batch(query: Composed<'_>, events: EventColumns) -> Composed<'_> {
    query
        .bind::<Array<SqlUuid>, _>(events.id)
        .bind::<Array<SqlUuid>, _>(events.user_id)
        .bind::<Array<Nullable<SqlUuid>>, _>(events.api_key_id)
        .bind::<Array<SqlUuid>, _>(events.tool_id)
        .bind::<Array<Nullable<SqlUuid>>, _>(events.subscription_id)
        .bind::<Array<BigInt>, _>(events.tokens_used)
        .bind::<Array<Bool>, _>(events.tokens_estimated)
        .bind::<Array<Text>, _>(events.status)
        .bind::<Array<Nullable<Text>>, _>(events.error_code)
        .bind::<Array<Integer>, _>(events.latency_ms)
        .bind::<Array<Timestamptz>, _>(events.created_at)
        .bind::<Array<BigInt>, _>(events.tokens_overrun)
        .bind::<Array<Text>, _>(events.tier)
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
    if let Some(key) = filter.api_key {
        query = query.filter(usage_events::api_key_id.eq(key));
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

/// Whether the usage row `id` exists.
pub async fn exists(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        usage_events::table.filter(usage_events::id.eq(id)),
    ))
    .get_result(conn)
    .await
}

pub async fn count(conn: &mut AsyncPgConnection, filter: &Filter) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn).await
}

/// A half-open range of raw rows, read when `read`; a `None` bound is no bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawRange {
    pub read: bool,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The bounds that stand for "no bound" on whole days in `summary_totals.sql`, inside PostgreSQL's dates.
const FIRST_DAY: Option<NaiveDate> = NaiveDate::from_ymd_opt(1, 1, 1);
const LAST_DAY: Option<NaiveDate> = NaiveDate::from_ymd_opt(9999, 12, 31);

/// The start of `day` (UTC).
fn start_of(day: Option<NaiveDate>) -> Option<DateTime<Utc>> {
    day.map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
}

impl RawRange {
    /// Its bounds as `summary_totals.sql` takes them: no bound is the start of [`FIRST_DAY`] or of
    /// [`LAST_DAY`], never null.
    fn bounds(self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (
            self.from.or_else(|| start_of(FIRST_DAY)),
            self.to.or_else(|| start_of(LAST_DAY)),
        )
    }
}

/// Runs `summary_totals.sql`: totals per tool and per day of the rollups' whole days in
/// `days` (when given; a `None` bound is no bound) and of the raw rows in `head` and `tail`.
///
/// The statement is kept prepared on the connection and runs on its generic plan, set for its own
/// transaction: PostgreSQL would otherwise plan it again for every call (it prices the generic plan
/// above one planned for the call's values), and planning takes half as long as running it, while
/// the generic plan runs as fast.
pub async fn summary_totals(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    days: Option<(Option<NaiveDate>, Option<NaiveDate>)>,
    head: RawRange,
    tail: RawRange,
) -> QueryResult<Vec<SummaryTotal>> {
    let (from_day, to_day) = match days {
        Some((from, to)) => (from.or(FIRST_DAY), to.or(LAST_DAY)),
        None => (FIRST_DAY, FIRST_DAY),
    };
    let ((head_from, head_to), (tail_from, tail_to)) = (head.bounds(), tail.bounds());
    let query = diesel::sql_query(include_str!("summary_totals.sql"))
        .bind::<SqlUuid, _>(user)
        .bind::<Nullable<Date>, _>(from_day)
        .bind::<Nullable<Date>, _>(to_day)
        .bind::<Bool, _>(head.read)
        .bind::<Nullable<Timestamptz>, _>(head_from)
        .bind::<Nullable<Timestamptz>, _>(head_to)
        .bind::<Bool, _>(tail.read)
        .bind::<Nullable<Timestamptz>, _>(tail_from)
        .bind::<Nullable<Timestamptz>, _>(tail_to)
        .cached();
    // One statement, so one snapshot reads the rollups and the rows not rolled up yet (see `roll`).
    // Its generic plan stays below JIT's threshold; JIT is off all the same, so a plan priced higher
    // later is not compiled on every call, far longer than it runs.
    diesel_async::AsyncConnection::transaction(conn, async |conn| {
        diesel::sql_query(
            "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), \
                    set_config('jit', 'off', true)",
        )
        .execute(conn)
        .await?;
        query.load(conn).await
    })
    .await
}

/// Makes sure the months holding `now` and a month later have their partitions of the log; returns how
/// many it made.
pub async fn ensure_months(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Made {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        made: bool,
    }
    let made: Vec<Made> = diesel::sql_query(
        "SELECT usage_events_ensure_month(m) AS made FROM unnest(ARRAY[$1, $1 + interval '1 month']) AS m",
    )
    .bind::<Timestamptz, _>(now)
    .load(conn)
    .await?;
    Ok(made.iter().filter(|m| m.made).count())
}

/// Drops the log's partitions of months that end at or before `cutoff`; returns the rows they held.
pub async fn drop_months_before(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Dropped {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let dropped: Dropped = diesel::sql_query("SELECT usage_events_drop_months_before($1) AS n")
        .bind::<Timestamptz, _>(cutoff)
        .get_result(conn)
        .await?;
    Ok(dropped.n)
}

/// Deletes up to `batch` raw rows older than `before` that are in the rollups (see `roll`); returns
/// how many went.
pub async fn delete_older_than(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM usage_events WHERE id IN (SELECT id FROM usage_events WHERE created_at < $1 \
           AND (xact IS NULL OR xact < (SELECT rolled_before FROM usage_roll)) ORDER BY created_at LIMIT $2)",
    )
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await
}
