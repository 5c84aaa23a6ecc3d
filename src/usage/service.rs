//! Reading the usage log: pages of the caller's history and exact summaries from the rollups.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

use super::model::Filter;
use super::model::{SummaryTotal, UsageEvent};
use super::{fold, platform, repo, roll};
use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// Checks a `[from, to)` range.
pub fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> AppResult<()> {
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(AppError::bad_input(
            "from",
            "`from` must not be after `to`.",
        ));
    }
    Ok(())
}

/// How far back from where a page starts it is first looked for.
const RECENT_DAYS: i64 = 32;

/// One page of the log (newest first) and whether more follow. The rows of a window ending where the
/// page starts are the newest of all when they fill it, since every row outside it is older.
pub async fn page(
    app: &AppState,
    filter: &Filter,
    after: Option<(DateTime<Utc>, Uuid)>,
    first: i64,
) -> AppResult<(Vec<UsageEvent>, bool)> {
    check_range(filter.from, filter.to)?;
    let mut conn = app.read_pool.get().await?;
    // The log is partitioned by month: a page is first looked for in the month or so before where it
    // starts, which reads one or two partitions, and in every older month only if that falls short.
    let starts = after
        .map(|(at, _)| at)
        .or(filter.to)
        .unwrap_or_else(|| app.clock.now());
    let recent = starts - chrono::Duration::days(RECENT_DAYS);
    if filter.from.is_none_or(|from| from < recent) {
        let window = Filter {
            from: Some(recent),
            ..*filter
        };
        let rows = repo::page(&mut conn, &window, after, first + 1).await?;
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) > first {
            return Ok(crate::db::one_page(rows, first));
        }
    }
    let rows = repo::page(&mut conn, filter, after, first + 1).await?;
    Ok(crate::db::one_page(rows, first))
}

pub async fn count(app: &AppState, filter: &Filter) -> AppResult<i64> {
    let mut conn = app.read_pool.get().await?;
    Ok(repo::count(&mut conn, filter).await?)
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Totals for `[from, to)` per tool and per day, exact, in one statement: whole days come from the
/// rollups, the partial days at either edge from the raw log (at most two days of one user's rows).
pub async fn summary_totals(
    app: &AppState,
    user: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> AppResult<Vec<SummaryTotal>> {
    check_range(from, to)?;
    let first_full = from.map(|f| {
        let day = f.date_naive();
        if f == day_start(day) {
            day
        } else {
            day.succ_opt().unwrap_or(day)
        }
    });
    let end_full = to.map(|t| t.date_naive());
    let mut conn = app.read_pool.get().await?;
    if let (Some(a), Some(b)) = (first_full, end_full)
        && a >= b
    {
        let whole = repo::RawRange {
            read: true,
            from,
            to,
        };
        let none = repo::RawRange::default();
        return Ok(repo::summary_totals(&mut conn, user, None, whole, none).await?);
    }
    let mut head = repo::RawRange::default();
    if let (Some(from), Some(first_full)) = (from, first_full)
        && from < day_start(first_full)
    {
        let head_end = to.map_or(day_start(first_full), |t| t.min(day_start(first_full)));
        head = repo::RawRange {
            read: true,
            from: Some(from),
            to: Some(head_end),
        };
    }
    let mut tail = repo::RawRange::default();
    if let (Some(to), Some(end_full)) = (to, end_full)
        && to > day_start(end_full)
    {
        let tail_start = from.map_or(day_start(end_full), |f| f.max(day_start(end_full)));
        tail = repo::RawRange {
            read: true,
            from: Some(tail_start),
            to: Some(to),
        };
    }
    let days = Some((first_full, end_full));
    Ok(repo::summary_totals(&mut conn, user, days, head, tail).await?)
}

/// Makes sure the log has partitions for the month of `now` and the next (the sweeper's).
pub async fn ensure_months(app: &AppState, now: DateTime<Utc>) -> AppResult<()> {
    let mut conn = app.pool.get().await?;
    let made = repo::ensure_months(&mut conn, now).await?;
    if made > 0 {
        tracing::info!(made, "monthly partitions of the usage log made");
    }
    Ok(())
}

/// Deletes raw log rows older than the retention (rollups stay): the partitions of months wholly past
/// it are dropped, the older rows of the month it reaches deleted. Only rows in the rollups go: the
/// rows are rolled up first, and a row still past the roll's mark is kept (with the partition that
/// holds it) until a later sweep. Returns how many went.
pub async fn apply_retention(app: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let days = app.config.usage_retention_days;
    if days == 0 {
        return Ok(0);
    }
    let before = now - chrono::Duration::days(i64::from(days));
    super::roller::roll_up(app, roll::Turn::Wait).await?;
    let mut conn = app.pool.get().await?;
    // Whole months past the retention go with their partitions; the rest row by row.
    let dropped = if roll::any_unrolled(&mut conn, Some(before)).await? {
        tracing::warn!("usage rows past the retention are not rolled up yet; their months stay");
        0
    } else {
        repo::drop_months_before(&mut conn, before).await?
    };
    let mut deleted = usize::try_from(dropped).unwrap_or(usize::MAX);
    loop {
        let batch = repo::delete_older_than(&mut conn, before, 10_000).await?;
        deleted += batch;
        if batch < 10_000 {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(
            deleted,
            retention_days = days,
            "old usage rows deleted (daily rollups kept)"
        );
    }
    Ok(deleted)
}

/// Folds the days that ended a day or more before `now` into the monthly rollups and day totals (the
/// sweeper's). The day before today stays out, so the fold rarely meets calls still being rolled up.
pub async fn fold_closed_days(app: &AppState, now: DateTime<Utc>) -> AppResult<()> {
    let Some(before) = now.date_naive().pred_opt() else {
        return Ok(());
    };
    let mut conn = app.pool.get().await?;
    if let Some((from, to)) = fold::fold_days_before(&mut conn, before).await? {
        tracing::info!(%from, %to, "closed days of the daily rollups folded");
    }
    Ok(())
}

/// The platform's usage over whole days (UTC): its rollups per tool and tier, its totals per day, and
/// how many users were active.
pub struct PlatformUsage {
    pub rollups: Vec<platform::PlatformRollup>,
    pub days: Vec<platform::PlatformDayTotal>,
    pub active_users: i64,
}

/// The platform's usage in `[from_day, to_day)`, from the rollups.
pub async fn platform(
    app: &AppState,
    from_day: Option<NaiveDate>,
    to_day: Option<NaiveDate>,
) -> AppResult<PlatformUsage> {
    let range = platform::Span {
        from: from_day,
        to: to_day,
    };
    // On connections of their own at once: the answer waits for the slowest, not for all. Each reads
    // the roll's mark and the rollups in one snapshot (see `roll`).
    let rollups = async {
        let mut conn = app.read_pool.get().await?;
        Ok::<_, AppError>(platform::rollups(&mut conn, range).await?)
    };
    let days = async {
        let mut conn = app.read_pool.get().await?;
        Ok::<_, AppError>(platform::day_totals(&mut conn, range).await?)
    };
    let active_users = async {
        let mut conn = app.read_pool.get().await?;
        Ok::<_, AppError>(platform::active_users(&mut conn, range).await?)
    };
    let (rollups, days, active_users) = tokio::try_join!(rollups, days, active_users)?;
    Ok(PlatformUsage {
        rollups,
        days,
        active_users,
    })
}
