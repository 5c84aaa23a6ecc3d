//! Folding closed days of the daily rollups into monthly ones, off the metering path: the platform's
//! (`platform_daily` into `platform_monthly`) and each user's (`usage_daily` into `usage_monthly` per
//! tool and `usage_day_totals` across tools).
//!
//! `platform_fold.folded_before` is the first day not folded: every monthly row holds exactly the days
//! of its month before it, and the day totals exactly those days. The fold adds days to their months and
//! moves that day forward in one transaction, under SHARE locks on `usage_daily` and `platform_daily`
//! (in the order a roll writes them): it waits for the rolls already writing and holds back new ones
//! until it commits, so it sees every row of the days it folds. A roll that adds to a day already
//! folded adds it to the folded tables as well (`roll_rollups.sql` calls `usage_add_late_days`), so
//! each day reaches them exactly once, however late its calls are rolled up.

use chrono::NaiveDate;
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel::sql_types::Date;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

#[derive(QueryableByName)]
struct FoldedBefore {
    #[diesel(sql_type = Date)]
    folded_before: NaiveDate,
}

/// The first day whose rollups are not in the monthly ones.
pub async fn folded_before(conn: &mut AsyncPgConnection) -> QueryResult<NaiveDate> {
    let row: FoldedBefore = diesel::sql_query("SELECT folded_before FROM platform_fold")
        .get_result(conn)
        .await?;
    Ok(row.folded_before)
}

/// Folds every day before `before` not folded yet into its month. Returns the days it folded, `None`
/// when they already were. Safe on many instances at once: they take turns on the fold's row.
pub async fn fold_days_before(
    conn: &mut AsyncPgConnection,
    before: NaiveDate,
) -> QueryResult<Option<(NaiveDate, NaiveDate)>> {
    if folded_before(conn).await? >= before {
        return Ok(None);
    }
    conn.transaction(async |conn| {
        // New rolls queue behind the fold's lock while it waits for those in flight (a few milliseconds
        // each): a fold that cannot have it within a second gives up until the next sweep.
        diesel::sql_query("SET LOCAL lock_timeout = '1s'")
            .execute(conn)
            .await?;
        let from: FoldedBefore =
            diesel::sql_query("SELECT folded_before FROM platform_fold FOR UPDATE")
                .get_result(conn)
                .await?;
        let from = from.folded_before;
        if from >= before {
            return Ok(None);
        }
        lock_daily_rollups(conn).await?;
        add_days_to_months(conn, Some(from), before).await?;
        diesel::sql_query("UPDATE platform_fold SET folded_before = $1")
            .bind::<Date, _>(before)
            .execute(conn)
            .await?;
        Ok(Some((from, before)))
    })
    .await
}

/// Makes the monthly rollups again from the daily ones, for every day folded: after the daily rows were
/// rewritten other than by the roller (the usage generator).
pub async fn refold(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    conn.transaction(async |conn| {
        let before: FoldedBefore =
            diesel::sql_query("SELECT folded_before FROM platform_fold FOR UPDATE")
                .get_result(conn)
                .await?;
        lock_daily_rollups(conn).await?;
        for table in ["platform_monthly", "usage_monthly", "usage_day_totals"] {
            diesel::sql_query(format!("DELETE FROM {table}"))
                .execute(conn)
                .await?;
        }
        add_days_to_months(conn, None, before.folded_before).await
    })
    .await
}

/// Holds back rolls until the transaction ends, after those in flight have committed.
async fn lock_daily_rollups(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("LOCK TABLE usage_daily, platform_daily IN SHARE MODE")
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds the daily rollups of `[from, to)` to their months' and the user day totals (in key order, as
/// a roll does). The days are a range of the daily tables' day index; a fold reads a day or a few.
async fn add_days_to_months(
    conn: &mut AsyncPgConnection,
    from: Option<NaiveDate>,
    to: NaiveDate,
) -> QueryResult<()> {
    let days = if from.is_some() {
        "day >= $1 AND day < $2"
    } else {
        "day < $1"
    };
    let statements = [
        format!(
            "INSERT INTO platform_monthly (month, tool_id, tier, shard, invocations, errors, tokens, latency_hist) \
             SELECT date_trunc('month', day)::date, tool_id, tier, shard, sum(invocations)::bigint, \
                    sum(errors)::bigint, sum(tokens)::bigint, latency_hist_sum(latency_hist) \
             FROM platform_daily WHERE {days} \
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 \
             ON CONFLICT (month, tool_id, tier, shard) DO UPDATE SET \
               invocations = platform_monthly.invocations + EXCLUDED.invocations, \
               errors = platform_monthly.errors + EXCLUDED.errors, \
               tokens = platform_monthly.tokens + EXCLUDED.tokens, \
               latency_hist = latency_hist_add(platform_monthly.latency_hist, EXCLUDED.latency_hist)"
        ),
        format!(
            "INSERT INTO usage_monthly (user_id, month, tool_id, invocations, tokens) \
             SELECT user_id, date_trunc('month', day)::date, tool_id, sum(invocations)::bigint, \
                    sum(tokens)::bigint \
             FROM usage_daily WHERE {days} \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 \
             ON CONFLICT (user_id, month, tool_id) DO UPDATE SET \
               invocations = usage_monthly.invocations + EXCLUDED.invocations, \
               tokens = usage_monthly.tokens + EXCLUDED.tokens"
        ),
        format!(
            "INSERT INTO usage_day_totals (user_id, day, invocations, tokens) \
             SELECT user_id, day, sum(invocations)::bigint, sum(tokens)::bigint \
             FROM usage_daily WHERE {days} \
             GROUP BY 1, 2 ORDER BY 1, 2 \
             ON CONFLICT (user_id, day) DO UPDATE SET \
               invocations = usage_day_totals.invocations + EXCLUDED.invocations, \
               tokens = usage_day_totals.tokens + EXCLUDED.tokens"
        ),
    ];
    for sql in statements {
        let mut query = diesel::sql_query(sql).into_boxed();
        if let Some(from) = from {
            query = query.bind::<Date, _>(from);
        }
        query.bind::<Date, _>(to).execute(conn).await?;
    }
    Ok(())
}
