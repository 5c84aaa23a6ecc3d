//! Adding the usage log to the rollups after the answer (migration `usage_rolled_after`).
//!
//! Each usage row carries the id of the transaction that wrote it (`xact`). `usage_roll.rolled_before`
//! is the roll's mark: every row with a smaller id, or none, is in the rollups (`usage_daily`,
//! `user_activity`, `user_last_active`, `platform_daily`, and the folded ones for days already folded),
//! and every other row is not. A roll takes the mark's row (instances take turns; one that finds it
//! taken skips), reads the oldest transaction still running (every transaction below it has ended, so
//! all of their rows are visible), adds the rows between the mark and it to the rollups and moves the
//! mark there, in one transaction. A crash loses nothing: the rows are the record, and the next roll
//! starts from the mark that committed.
//!
//! A reader of the rollups adds, in the same statement, the rows at or past the mark that its snapshot
//! sees (the database function `usage_unrolled`): a snapshot sees a roll's rollups and its mark
//! together or neither, so each call is counted once, and as soon as its usage row has committed.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel::sql_types::{
    Array, BigInt, Bool, Date, Integer, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{LATENCY_BOUNDS_MS, latency_bucket};
use super::repo::NO_PLAN;
use crate::db::cached::CachedExt;

/// Most rows one roll adds: a longer backlog (after the database held an old transaction open, say)
/// takes several rolls, each of bounded size.
pub const MOST_ROWS: usize = 20_000;

/// The platform rollup shard rolls add to (rolls take turns, so one is enough).
const SHARD: i16 = 0;

/// A transaction id: the roll's mark, or where a roll stops.
#[derive(QueryableByName)]
struct Mark {
    #[diesel(sql_type = BigInt)]
    mark: i64,
}

/// A usage row as the rollups count it.
#[derive(QueryableByName, Debug)]
struct RolledRow {
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    tool_id: Uuid,
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    tokens_used: i64,
    #[diesel(sql_type = Bool)]
    failed: bool,
    #[diesel(sql_type = Integer)]
    latency_ms: i32,
    #[diesel(sql_type = Text)]
    tier: String,
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
    fn add(&mut self, row: &RolledRow) {
        self.invocations += 1;
        self.tokens += row.tokens_used;
        self.errors += i64::from(row.failed);
        self.latency_ms_sum += i64::from(row.latency_ms);
        let bucket = usize::try_from(latency_bucket(row.latency_ms) - 1).unwrap_or(0);
        if let Some(count) = self.histogram.get_mut(bucket) {
            *count += 1;
        }
    }
}

/// The rollups' increments of some rows, as columns ready to bind, summed per rollup key and sorted
/// by it (rollup rows are upserted in key order, so rolls and folds cannot deadlock).
#[derive(Debug, Default)]
struct Increments {
    daily_user: Vec<Uuid>,
    daily_tool: Vec<Uuid>,
    daily_day: Vec<NaiveDate>,
    daily_invocations: Vec<i64>,
    daily_tokens: Vec<i64>,
    daily_errors: Vec<i64>,
    daily_latency_ms_sum: Vec<i64>,
    platform_day: Vec<NaiveDate>,
    platform_tool: Vec<Uuid>,
    platform_tier: Vec<String>,
    platform_invocations: Vec<i64>,
    platform_errors: Vec<i64>,
    platform_tokens: Vec<i64>,
    /// As `bigint[]` literals.
    platform_histogram: Vec<String>,
}

fn increments(rows: &[RolledRow]) -> Increments {
    let mut daily: BTreeMap<(Uuid, NaiveDate, Uuid), Totals> = BTreeMap::new();
    let mut platform: BTreeMap<(NaiveDate, Uuid, &str), Totals> = BTreeMap::new();
    for row in rows {
        daily
            .entry((row.user_id, row.day, row.tool_id))
            .or_default()
            .add(row);
        platform
            .entry((row.day, row.tool_id, row.tier.as_str()))
            .or_default()
            .add(row);
    }
    let mut out = Increments::default();
    for ((user, day, tool), totals) in daily {
        out.daily_user.push(user);
        out.daily_day.push(day);
        out.daily_tool.push(tool);
        out.daily_invocations.push(totals.invocations);
        out.daily_tokens.push(totals.tokens);
        out.daily_errors.push(totals.errors);
        out.daily_latency_ms_sum.push(totals.latency_ms_sum);
    }
    for ((day, tool, tier), totals) in platform {
        out.platform_day.push(day);
        out.platform_tool.push(tool);
        out.platform_tier.push(tier.to_owned());
        out.platform_invocations.push(totals.invocations);
        out.platform_errors.push(totals.errors);
        out.platform_tokens.push(totals.tokens);
        let cells: Vec<String> = totals.histogram.iter().map(ToString::to_string).collect();
        out.platform_histogram
            .push(format!("{{{}}}", cells.join(",")));
    }
    out
}

/// The usage rows a snapshot sees that are not in the rollups yet: those whose `xact` is
/// in `[from, to)`, from the roll's mark to the snapshot's first transaction id not yet given out
/// (rows at or past it are invisible to the snapshot anyway). Both bounds are given to the query
/// that looks for them, so its plan takes the index on `xact` for that range, statistics or not.
/// (The reads of the rollups find these rows with the database function `usage_unrolled`, in their
/// own statement.)
#[derive(QueryableByName, Debug, Clone, Copy)]
struct Unrolled {
    #[diesel(sql_type = BigInt)]
    from_xact: i64,
    #[diesel(sql_type = BigInt)]
    to_xact: i64,
}

/// [`Unrolled`] for the current snapshot.
async fn unrolled(conn: &mut AsyncPgConnection) -> QueryResult<Unrolled> {
    diesel::sql_query(
        "SELECT rolled_before AS from_xact, \
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS to_xact \
         FROM usage_roll",
    )
    .cached()
    .get_result(conn)
    .await
}

/// Whether any usage row is not in the rollups yet, or with `before`, any older than it: a cheap look,
/// taken before a roll writes anything, and by retention, which keeps such rows.
pub async fn any_unrolled(
    conn: &mut AsyncPgConnection,
    before: Option<DateTime<Utc>>,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Any {
        #[diesel(sql_type = Bool)]
        any: bool,
    }
    let unrolled = unrolled(conn).await?;
    // Planned for the values (not kept prepared): a generic plan would price the log at a default
    // share of every partition, and PostgreSQL would compile it (JIT) on every look.
    let any: Any = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM usage_events \
                        WHERE xact >= $1 AND xact < $3 AND created_at < COALESCE($2, 'infinity')) AS any",
    )
    .bind::<BigInt, _>(unrolled.from_xact)
    .bind::<Nullable<Timestamptz>, _>(before)
    .bind::<BigInt, _>(unrolled.to_xact)
    .get_result(conn)
    .await?;
    Ok(any.any)
}

/// What a roll does when another roll holds the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Leaves the rows to it (the roller: whoever holds the mark rolls them).
    Skip,
    /// Waits for it to end, then rolls what is left (retention, which needs them rolled up).
    Wait,
}

/// Adds the rows whose transactions have ended to the rollups and moves the mark past them. Returns
/// how many rows it added, or `None` when another roll held the mark and `turn` skips.
pub async fn roll(conn: &mut AsyncPgConnection, turn: Turn) -> QueryResult<Option<usize>> {
    conn.transaction(async |conn| {
        // The rollups can be made again from the rows, and the mark commits with them, so a roll
        // lost in a crash is only rolled again: its commit need not wait for the disk. Its kept
        // statements' generic plans price the log at a default share of every partition, which would
        // have PostgreSQL compile them (JIT) on every roll, far longer than they run.
        diesel::sql_query(
            "SELECT set_config('synchronous_commit', 'off', true), set_config('jit', 'off', true)",
        )
        .execute(conn)
        .await?;
        let held: Option<Mark> = diesel::sql_query(match turn {
            Turn::Skip => "SELECT rolled_before AS mark FROM usage_roll FOR UPDATE SKIP LOCKED",
            Turn::Wait => "SELECT rolled_before AS mark FROM usage_roll FOR UPDATE",
        })
        .cached()
        .get_result(conn)
        .await
        .map(Some)
        .or_else(|e| match e {
            diesel::result::Error::NotFound => Ok(None),
            e => Err(e),
        })?;
        let Some(Mark { mark: from }) = held else {
            return Ok(None);
        };
        // Every transaction below the oldest one still running has ended: their rows are all
        // visible from here on, and none can be added below it. The batch stops short of the row
        // after MOST_ROWS, at a transaction's first row, so a transaction's rows roll together.
        let bound: Mark = diesel::sql_query(
            "WITH ended AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x) \
             SELECT COALESCE(NULLIF((SELECT xact FROM usage_events WHERE xact >= $1 AND xact < (SELECT x FROM ended) \
                                     ORDER BY xact OFFSET $2 LIMIT 1), $1), (SELECT x FROM ended)) AS mark",
        )
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(i64::try_from(MOST_ROWS).unwrap_or(i64::MAX))
        .cached()
        .get_result(conn)
        .await?;
        let to = bound.mark;
        if to <= from {
            return Ok(Some(0));
        }
        let rows: Vec<RolledRow> = diesel::sql_query(
            "SELECT user_id, tool_id, (created_at AT TIME ZONE 'UTC')::date AS day, tokens_used, \
                    status = 'ERROR' AS failed, latency_ms, COALESCE(tier, $3) AS tier \
             FROM usage_events WHERE xact >= $1 AND xact < $2",
        )
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .bind::<Text, _>(NO_PLAN)
        .cached()
        .load(conn)
        .await?;
        let i = increments(&rows);
        diesel::sql_query(include_str!("roll_rollups.sql"))
            .bind::<Array<SqlUuid>, _>(i.daily_user)
            .bind::<Array<SqlUuid>, _>(i.daily_tool)
            .bind::<Array<Date>, _>(i.daily_day)
            .bind::<Array<BigInt>, _>(i.daily_invocations)
            .bind::<Array<BigInt>, _>(i.daily_tokens)
            .bind::<Array<BigInt>, _>(i.daily_errors)
            .bind::<Array<BigInt>, _>(i.daily_latency_ms_sum)
            .bind::<Array<Date>, _>(i.platform_day)
            .bind::<Array<SqlUuid>, _>(i.platform_tool)
            .bind::<Array<Text>, _>(i.platform_tier)
            .bind::<Array<BigInt>, _>(i.platform_invocations)
            .bind::<Array<BigInt>, _>(i.platform_errors)
            .bind::<Array<BigInt>, _>(i.platform_tokens)
            .bind::<Array<Text>, _>(i.platform_histogram)
            .bind::<SmallInt, _>(SHARD)
            .bind::<BigInt, _>(to)
            .cached()
            .execute(conn)
            .await?;
        Ok(Some(rows.len()))
    })
    .await
}
