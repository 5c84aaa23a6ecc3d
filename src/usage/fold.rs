//! Folding closed days of the platform's daily rollups into its monthly ones, off the metering path.
//!
//! `platform_fold.folded_before` is the first day not folded: every `platform_monthly` row holds exactly
//! the days of its month before it. The fold adds days to their months and moves that day forward in one
//! transaction, under a SHARE lock on `platform_daily`: it waits for the metering transactions already
//! writing and holds back new ones until it commits, so it sees every row of the days it folds. A meter
//! statement that writes a day already folded adds it to its month as well (`record_batch.sql`), so each
//! day reaches its month exactly once, however late its calls are metered.

use chrono::NaiveDate;
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel::sql_types::{Date, Nullable};
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
        // New metering statements queue behind the fold's lock while it waits for those in flight (about
        // a millisecond each): a fold that cannot have it within a second gives up until the next sweep.
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
        diesel::sql_query("LOCK TABLE platform_daily IN SHARE MODE")
            .execute(conn)
            .await?;
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
/// rewritten other than by the meter (the usage generator).
pub async fn refold(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    conn.transaction(async |conn| {
        let before: FoldedBefore =
            diesel::sql_query("SELECT folded_before FROM platform_fold FOR UPDATE")
                .get_result(conn)
                .await?;
        diesel::sql_query("LOCK TABLE platform_daily IN SHARE MODE")
            .execute(conn)
            .await?;
        diesel::sql_query("DELETE FROM platform_monthly")
            .execute(conn)
            .await?;
        add_days_to_months(conn, None, before.folded_before).await
    })
    .await
}

/// Adds the daily rollups of `[from, to)` to their months' (in key order, as the meter does).
async fn add_days_to_months(
    conn: &mut AsyncPgConnection,
    from: Option<NaiveDate>,
    to: NaiveDate,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO platform_monthly (month, tool_id, tier, shard, invocations, errors, tokens, latency_hist) \
         SELECT date_trunc('month', day)::date, tool_id, tier, shard, sum(invocations)::bigint, \
                sum(errors)::bigint, sum(tokens)::bigint, latency_hist_sum(latency_hist) \
         FROM platform_daily WHERE ($1::date IS NULL OR day >= $1) AND day < $2 \
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 \
         ON CONFLICT (month, tool_id, tier, shard) DO UPDATE SET \
           invocations = platform_monthly.invocations + EXCLUDED.invocations, \
           errors = platform_monthly.errors + EXCLUDED.errors, \
           tokens = platform_monthly.tokens + EXCLUDED.tokens, \
           latency_hist = latency_hist_add(platform_monthly.latency_hist, EXCLUDED.latency_hist)",
    )
    .bind::<Nullable<Date>, _>(from)
    .bind::<Date, _>(to)
    .execute(conn)
    .await?;
    Ok(())
}
