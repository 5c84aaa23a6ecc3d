//! A user's summary over ranges that the rollups serve as folded months per tool (`usage_monthly`),
//! folded day totals (`usage_day_totals`) and other days (`usage_daily`): every shape of range adds up
//! to the days in it wherever the fold stands, for the user alone; calls metered before the fold, after
//! it and late for a day already folded show the same in every range that holds them.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use joyfull_hub::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::folds::{fold_before, four_calls_unfolded, two_tools_unfolded};
use crate::helpers::metered::Metered;
use crate::helpers::{TestApp, TestUser};

const SUMMARY: &str = "query($from: DateTime, $to: DateTime) { usageSummary(from: $from, to: $to) { totalTokens totalInvocations byTool { tool { id } invocations tokens } byDay { day invocations tokens } } }";

async fn summary(app: &TestApp, user: &TestUser, from: &Value, to: &Value) -> Value {
    app.object_as(
        &user.access_token,
        SUMMARY,
        json!({ "from": from, "to": to }),
        &["usageSummary"],
    )
    .await
}

/// A summary as comparable values.
#[derive(Debug, PartialEq)]
struct Totals {
    invocations: i64,
    tokens: i64,
    /// Invocations and tokens per tool id.
    by_tool: BTreeMap<String, (i64, i64)>,
    /// The days, in order, as the API gives them.
    by_day: Vec<Value>,
}

fn normalised(summary: &Value) -> Totals {
    let by_tool = summary["byTool"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tool"]["id"].as_str().unwrap().to_owned(),
                (
                    t["invocations"].as_i64().unwrap(),
                    t["tokens"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    Totals {
        invocations: summary["totalInvocations"].as_i64().unwrap(),
        tokens: summary["totalTokens"].as_i64().unwrap(),
        by_tool,
        by_day: summary["byDay"].as_array().unwrap().clone(),
    }
}

/// One day's rollup of a user and tool; every call is worth 10 tokens.
struct DayRollup<'a> {
    user: &'a TestUser,
    tool: &'a str,
    day: &'static str,
    invocations: i64,
}

/// The summary that `rows` of `user` make over `[from, to)` (whole days; `None` is no bound).
fn expected(
    rows: &[DayRollup<'_>],
    user: &TestUser,
    from: Option<&str>,
    to: Option<&str>,
) -> Totals {
    let mut by_tool: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut by_day: BTreeMap<&str, i64> = BTreeMap::new();
    for row in rows.iter().filter(|r| {
        r.user.id == user.id && from.is_none_or(|f| r.day >= f) && to.is_none_or(|t| r.day < t)
    }) {
        let tool = by_tool.entry(row.tool.to_owned()).or_default();
        tool.0 += row.invocations;
        tool.1 += row.invocations * 10;
        *by_day.entry(row.day).or_default() += row.invocations;
    }
    let total: i64 = by_day.values().sum();
    let days = by_day
        .into_iter()
        .map(|(day, n)| json!({ "day": day, "invocations": n, "tokens": n * 10 }))
        .collect();
    Totals {
        invocations: total,
        tokens: total * 10,
        by_tool,
        by_day: days,
    }
}

#[tokio::test]
async fn a_summary_adds_up_the_users_days_in_any_range_wherever_the_fold_is() {
    let (app, _, a, b) = two_tools_unfolded().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let bob = app.register("Bob", "bob@example.com").await;
    // Each of Ada's rows is a different power of ten, so a total names the rows it counted; Bob's
    // rows share her days and would show in any of her totals.
    let row = |user, tool, day, invocations| DayRollup {
        user,
        tool,
        day,
        invocations,
    };
    let rows = [
        row(&ada, &a, "2026-01-31", 1),
        row(&ada, &a, "2026-02-01", 20),
        row(&ada, &b, "2026-02-14", 300),
        row(&ada, &a, "2026-02-14", 4_000),
        row(&ada, &a, "2026-02-28", 50_000),
        row(&ada, &a, "2026-03-01", 600_000),
        row(&ada, &b, "2026-03-15", 7_000_000),
        row(&bob, &a, "2026-02-14", 80_000_000),
        row(&bob, &b, "2026-03-15", 900_000_000),
    ];
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "('{}', '{}', '{}', {}, {})",
                r.user.id,
                r.tool,
                r.day,
                r.invocations,
                r.invocations * 10
            )
        })
        .collect();
    app.sql(&format!(
        "INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens) VALUES {}",
        values.join(", ")
    ))
    .await;
    let at = |day: &str| json!(format!("{day}T00:00:00Z"));

    // Nothing folded; January and February; those and half of March; every day.
    for folded_before in ["2025-01-01", "2026-03-01", "2026-03-16", "2026-04-02"] {
        fold_before(&app, folded_before).await;
        for (from, to, what) in [
            (Some("2026-02-01"), Some("2026-03-01"), "February, whole"),
            (
                Some("2026-01-31"),
                Some("2026-03-02"),
                "February whole, a day either side",
            ),
            (Some("2026-02-14"), Some("2026-02-28"), "within February"),
            (
                Some("2026-02-20"),
                Some("2026-03-10"),
                "across a month end, no month whole",
            ),
            (Some("2026-01-01"), Some("2026-04-01"), "three whole months"),
            (None, Some("2026-03-01"), "no start"),
            (Some("2026-02-15"), None, "no end"),
            (None, None, "no bound"),
            (
                Some("2025-01-01"),
                Some("2025-03-01"),
                "months with no usage",
            ),
            (Some("2026-02-14"), Some("2026-02-14"), "an empty range"),
            (Some("0001-01-01"), Some("9999-12-31"), "the widest dates"),
        ] {
            let bound = |day: Option<&str>| day.map_or(Value::Null, at);
            let summary = summary(&app, &ada, &bound(from), &bound(to)).await;
            assert_eq!(
                normalised(&summary),
                expected(&rows, &ada, from, to),
                "{what}, folded before {folded_before}: {summary}"
            );
        }
    }
    for (table, n) in [
        ("usage_monthly", 7_654_321),
        ("usage_day_totals", 7_654_321),
    ] {
        assert_eq!(
            app.sql_number(&format!(
                "SELECT sum(invocations)::bigint AS n FROM {table} WHERE user_id = '{}'",
                ada.id
            ))
            .await,
            n,
            "{table} holds each of Ada's days once"
        );
    }
}

/// Every range that holds `at`'s day (where all calls were) gives the summary of all time.
async fn same_in_every_range(
    app: &TestApp,
    ada: &TestUser,
    at: DateTime<Utc>,
    calls: i64,
    when: &str,
) {
    let day = at.date_naive();
    let month = day.with_day(1).unwrap();
    let midnight = |day: NaiveDate| json!(format!("{day}T00:00:00Z"));
    let everything = summary(app, ada, &Value::Null, &Value::Null).await;
    assert_eq!(
        everything["totalInvocations"], calls,
        "{when}: {everything}"
    );
    assert_eq!(everything["byTool"].as_array().unwrap().len(), 2, "{when}");
    let next_day = day.succ_opt().unwrap();
    let next_month = month + chrono::Months::new(1);
    let an_hour_before = json!((at - chrono::Duration::hours(1)).to_rfc3339());
    let an_hour_after = json!((at + chrono::Duration::hours(1)).to_rfc3339());
    for (from, to) in [
        (midnight(month), Value::Null),
        (midnight(month), midnight(next_month)),
        (midnight(day), midnight(next_day)),
        (Value::Null, midnight(next_month)),
        (
            midnight(month - chrono::Months::new(1)),
            midnight(next_month + chrono::Months::new(1)),
        ),
        (an_hour_before.clone(), midnight(next_month)),
        (midnight(month), an_hour_after.clone()),
        (an_hour_before, an_hour_after),
    ] {
        let ranged = summary(app, ada, &from, &to).await;
        assert_eq!(ranged, everything, "{when}: from {from} to {to}");
    }
}

/// What the meter writes and the fold makes of it: the user's summary agrees whichever rows a range is
/// read from, before the fold, after it, and for a call metered after its day was folded (a late batch).
#[tokio::test]
async fn metered_calls_show_the_same_in_every_range_before_and_after_the_fold_and_when_late() {
    let Metered { app, tool, ada, .. } = four_calls_unfolded().await;
    // The calls were metered at the clock's time, which stands still.
    let at = app.clock.now();
    let folded =
        |table: &str| format!("SELECT coalesce(sum(invocations), 0)::bigint AS n FROM {table}");
    for table in ["usage_monthly", "usage_day_totals"] {
        assert_eq!(
            app.sql_number(&folded(table)).await,
            0,
            "the meter leaves {table} to the fold"
        );
    }
    same_in_every_range(&app, &ada, at, 4, "not folded").await;

    let next_month = at.date_naive().with_day(1).unwrap() + chrono::Months::new(1);
    fold_before(&app, &next_month.to_string()).await;
    for table in ["usage_monthly", "usage_day_totals"] {
        assert_eq!(app.sql_number(&folded(table)).await, 4, "{table} folded");
    }
    same_in_every_range(&app, &ada, at, 4, "the month folded").await;

    // The clock still stands on the folded day: this call's batch is late for it.
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    same_in_every_range(&app, &ada, at, 5, "a late call, not rolled up yet").await;
    app.rolled_up().await;
    for table in ["usage_monthly", "usage_day_totals"] {
        assert_eq!(
            app.sql_number(&folded(table)).await,
            5,
            "the late call reached {table}"
        );
    }
    same_in_every_range(&app, &ada, at, 5, "a late call").await;
    let tokens = |table: &str| format!("SELECT sum(tokens)::bigint AS n FROM {table}");
    let daily = app.sql_number(&tokens("usage_daily")).await;
    assert!(daily > 0);
    for table in ["usage_monthly", "usage_day_totals"] {
        assert_eq!(
            app.sql_number(&tokens(table)).await,
            daily,
            "{table}'s tokens"
        );
    }
}
