//! Reading the platform rollups for statistics. A range of days is read as the months wholly inside it
//! that are folded (`platform_monthly`, see [`super::fold`]) and the other days (`platform_daily`): a
//! year is 12 monthly rows per tool and tier and the days of at most two partial months and of the days
//! not folded yet, instead of 366 daily rows. Each read adds the usage rows not rolled up yet (see
//! [`super::roll`]) in the same statement, so one snapshot sees the rollups, the roll's mark and the rows.

use chrono::{Datelike, Months, NaiveDate};
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Date, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::fold;
use super::model::latency_histogram_sql;
use super::repo::NO_PLAN;

/// Days `[from, to)`; `None` leaves that side unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Where the rollups of a range are read: `months` (first days of the months wholly in range) from the
/// monthly rollups, `days` (the rest) from the daily ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub months: Option<Span>,
    pub days: Vec<Span>,
}

/// Splits `[from, to)` into the months wholly inside it and wholly before `folded_before` (the first
/// day not folded into the monthly rollups), and the days outside those months.
pub fn split(range: Span, folded_before: NaiveDate) -> Reading {
    let whole_from = match range.from {
        None => None,
        Some(day) if day.day() == 1 => Some(day),
        Some(day) => match first_of_month(day).checked_add_months(Months::new(1)) {
            Some(next) => Some(next),
            None => return days_only(range),
        },
    };
    let folded_months_end = first_of_month(folded_before);
    let whole_to = range.to.map_or(folded_months_end, |to| {
        first_of_month(to).min(folded_months_end)
    });
    if whole_from.is_some_and(|from| from >= whole_to) {
        return days_only(range);
    }
    let mut days = Vec::new();
    if let (Some(from), Some(to)) = (range.from, whole_from)
        && from < to
    {
        days.push(Span {
            from: Some(from),
            to: Some(to),
        });
    }
    if range.to.is_none_or(|to| whole_to < to) {
        days.push(Span {
            from: Some(whole_to),
            to: range.to,
        });
    }
    Reading {
        months: Some(Span {
            from: whole_from,
            to: Some(whole_to),
        }),
        days,
    }
}

/// The first day of `day`'s month: the key of the monthly rollups.
fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn days_only(range: Span) -> Reading {
    Reading {
        months: None,
        days: vec![range],
    }
}

/// Platform totals of one tool and tier over a month or a day (of one writer's shard).
#[derive(QueryableByName, Debug)]
pub struct PlatformRollup {
    #[diesel(sql_type = SqlUuid)]
    pub tool_id: Uuid,
    #[diesel(sql_type = Text)]
    pub tier: String,
    #[diesel(sql_type = BigInt)]
    pub invocations: i64,
    #[diesel(sql_type = BigInt)]
    pub errors: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = Array<BigInt>)]
    pub latency_hist: Vec<i64>,
}

/// Platform totals of one day.
#[derive(QueryableByName, Debug)]
pub struct PlatformDayTotal {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub invocations: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
}

/// A statement under construction with its date parameters, bound in order.
struct Bounds {
    dates: Vec<NaiveDate>,
}

impl Bounds {
    /// `column` within `span`, as SQL over this statement's parameters.
    fn condition(&mut self, column: &str, span: Span) -> String {
        let mut terms = Vec::new();
        if let Some(from) = span.from {
            self.dates.push(from);
            terms.push(format!("{column} >= ${}", self.dates.len()));
        }
        if let Some(to) = span.to {
            self.dates.push(to);
            terms.push(format!("{column} < ${}", self.dates.len()));
        }
        if terms.is_empty() {
            "TRUE".to_owned()
        } else {
            terms.join(" AND ")
        }
    }

    /// `created_at` within the whole days of `span` (UTC), as SQL over this statement's parameters.
    fn created_within(&mut self, span: Span) -> String {
        let mut terms = Vec::new();
        if let Some(from) = span.from {
            self.dates.push(from);
            terms.push(format!(
                "created_at >= (${}::date)::timestamp AT TIME ZONE 'UTC'",
                self.dates.len()
            ));
        }
        if let Some(to) = span.to {
            self.dates.push(to);
            terms.push(format!(
                "created_at < (${}::date)::timestamp AT TIME ZONE 'UTC'",
                self.dates.len()
            ));
        }
        if terms.is_empty() {
            "TRUE".to_owned()
        } else {
            terms.join(" AND ")
        }
    }

    fn query(self, sql: String) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        let mut query = diesel::sql_query(sql).into_boxed();
        for date in self.dates {
            query = query.bind::<Date, _>(date);
        }
        query
    }
}

/// The usage rows of `range` not rolled up yet, as SQL to follow `FROM`: read by `usage_unrolled`
/// in the snapshot of the statement that holds them, the one that reads the rollups.
fn unrolled_rows(bounds: &mut Bounds, range: Span) -> String {
    format!(
        "usage_unrolled(NULL) AS unrolled WHERE {}",
        bounds.created_within(range)
    )
}

/// Every rollup row (monthly and daily, of every shard) that makes up `range`, and the totals of the
/// usage rows not rolled up yet: summed, they are the platform's totals per tool and tier over it.
pub async fn rollups(
    conn: &mut AsyncPgConnection,
    range: Span,
) -> QueryResult<Vec<PlatformRollup>> {
    const COLUMNS: &str = "tool_id, tier, invocations, errors, tokens, latency_hist";
    let reading = split(range, fold::folded_before(conn).await?);
    let mut bounds = Bounds { dates: Vec::new() };
    let mut selects = Vec::new();
    if let Some(months) = reading.months {
        let condition = bounds.condition("month", months);
        selects.push(format!(
            "SELECT {COLUMNS} FROM platform_monthly WHERE {condition}"
        ));
    }
    for days in reading.days {
        let condition = bounds.condition("day", days);
        selects.push(format!(
            "SELECT {COLUMNS} FROM platform_daily WHERE {condition}"
        ));
    }
    let unrolled = unrolled_rows(&mut bounds, range);
    selects.push(format!(
        "SELECT tool_id, COALESCE(tier, '{NO_PLAN}') AS tier, count(*) AS invocations, \
                count(*) FILTER (WHERE status = 'ERROR') AS errors, sum(tokens_used)::bigint AS tokens, \
                {} AS latency_hist \
         FROM {unrolled} GROUP BY 1, 2",
        latency_histogram_sql("latency_ms")
    ));
    bounds.query(selects.join(" UNION ALL ")).load(conn).await
}

/// The platform's totals per day in `range`, by day, with the usage rows not rolled up yet.
pub async fn day_totals(
    conn: &mut AsyncPgConnection,
    range: Span,
) -> QueryResult<Vec<PlatformDayTotal>> {
    let mut bounds = Bounds { dates: Vec::new() };
    let condition = bounds.condition("day", range);
    let unrolled = unrolled_rows(&mut bounds, range);
    bounds
        .query(format!(
            "SELECT day, sum(invocations)::bigint AS invocations, sum(tokens)::bigint AS tokens \
             FROM (SELECT day, invocations, tokens FROM platform_daily WHERE {condition} \
                   UNION ALL \
                   SELECT (created_at AT TIME ZONE 'UTC')::date, 1, tokens_used FROM {unrolled}) AS d \
             GROUP BY day ORDER BY day"
        ))
        .load(conn)
        .await
}

/// Distinct users with any usage in `range`: those whose last active day is in it, those active
/// after it who also were in it (none, for a range that reaches today), and those with usage rows in
/// it not rolled up yet.
pub async fn active_users(conn: &mut AsyncPgConnection, range: Span) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut bounds = Bounds { dates: Vec::new() };
    let after_start = bounds.condition(
        "l.day",
        Span {
            from: range.from,
            to: None,
        },
    );
    let sql = match range.to {
        None => format!("SELECT l.user_id FROM user_last_active l WHERE {after_start}"),
        Some(to) => {
            let before_end = bounds.condition(
                "l.day",
                Span {
                    from: None,
                    to: Some(to),
                },
            );
            let in_range = bounds.condition("a.day", range);
            format!(
                "SELECT l.user_id FROM user_last_active l WHERE {after_start} AND ({before_end} \
                 OR EXISTS (SELECT 1 FROM user_activity a WHERE a.user_id = l.user_id AND {in_range}))"
            )
        }
    };
    let unrolled = unrolled_rows(&mut bounds, range);
    let sql =
        format!("SELECT count(*) AS n FROM ({sql} UNION SELECT user_id FROM {unrolled}) AS active");
    let count: Count = bounds.query(sql).get_result(conn).await?;
    Ok(count.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn span(from: Option<&str>, to: Option<&str>) -> Span {
        Span {
            from: from.map(day),
            to: to.map(day),
        }
    }

    /// Folded far ahead of every range below: only the range decides.
    const FOLDED_LATER: &str = "2030-06-15";

    fn split_folded(range: Span) -> Reading {
        split(range, day(FOLDED_LATER))
    }

    #[test]
    fn a_range_is_its_whole_months_and_the_days_at_its_edges() {
        assert_eq!(
            split_folded(span(Some("2025-12-06"), Some("2026-12-07"))),
            Reading {
                months: Some(span(Some("2026-01-01"), Some("2026-12-01"))),
                days: vec![
                    span(Some("2025-12-06"), Some("2026-01-01")),
                    span(Some("2026-12-01"), Some("2026-12-07")),
                ],
            }
        );
        assert_eq!(
            split_folded(span(Some("2026-03-01"), Some("2026-04-01"))),
            Reading {
                months: Some(span(Some("2026-03-01"), Some("2026-04-01"))),
                days: vec![],
            },
            "a range of whole months reads no day"
        );
    }

    #[test]
    fn an_unbounded_side_is_whole_months_up_to_the_fold_and_days_after() {
        assert_eq!(
            split_folded(span(None, None)),
            Reading {
                months: Some(span(None, Some("2030-06-01"))),
                days: vec![span(Some("2030-06-01"), None)],
            }
        );
        assert_eq!(
            split_folded(span(Some("2025-12-06"), None)),
            Reading {
                months: Some(span(Some("2026-01-01"), Some("2030-06-01"))),
                days: vec![
                    span(Some("2025-12-06"), Some("2026-01-01")),
                    span(Some("2030-06-01"), None)
                ],
            }
        );
        assert_eq!(
            split_folded(span(None, Some("2026-03-02"))),
            Reading {
                months: Some(span(None, Some("2026-03-01"))),
                days: vec![span(Some("2026-03-01"), Some("2026-03-02"))],
            }
        );
    }

    #[test]
    fn months_not_wholly_folded_are_read_as_days() {
        let range = span(Some("2026-01-01"), Some("2026-12-01"));
        assert_eq!(
            split(range, day("2026-07-01")),
            Reading {
                months: Some(span(Some("2026-01-01"), Some("2026-07-01"))),
                days: vec![span(Some("2026-07-01"), Some("2026-12-01"))],
            },
            "folded through June"
        );
        assert_eq!(
            split(range, day("2026-07-31")),
            Reading {
                months: Some(span(Some("2026-01-01"), Some("2026-07-01"))),
                days: vec![span(Some("2026-07-01"), Some("2026-12-01"))],
            },
            "July folded but for its last day"
        );
        assert_eq!(
            split(range, day("2026-08-01")),
            Reading {
                months: Some(span(Some("2026-01-01"), Some("2026-08-01"))),
                days: vec![span(Some("2026-08-01"), Some("2026-12-01"))],
            },
            "folded through July"
        );
        for folded_before in ["2026-01-31", "2025-05-05"] {
            assert_eq!(
                split(range, day(folded_before)),
                days_only(range),
                "no month of the range folded whole by {folded_before}"
            );
        }
    }

    #[test]
    fn a_range_inside_one_month_or_across_a_month_end_reads_days_only() {
        for (from, to) in [
            ("2026-03-01", "2026-03-02"),
            ("2026-03-05", "2026-04-01"),
            ("2026-03-20", "2026-04-10"),
            ("2026-03-05", "2026-03-05"),
        ] {
            let range = span(Some(from), Some(to));
            assert_eq!(split_folded(range), days_only(range), "{from} to {to}");
        }
    }

    #[test]
    fn the_last_representable_month_falls_back_to_days() {
        let range = Span {
            from: Some(NaiveDate::MAX),
            to: None,
        };
        assert_eq!(split_folded(range), days_only(range));
    }
}
