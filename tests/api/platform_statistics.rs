//! Platform statistics over ranges that the rollups serve as whole months (`platform_monthly`, folded
//! from the closed days) and other days (`platform_daily`): every shape of range adds up to the days in
//! it wherever the fold stands; the fold counts every day once, late calls and calls still being
//! metered included; and the users active in a range, counted from each user's last active day.

use chrono::{Datelike, NaiveDate};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::{Value, json};

use crate::helpers::folds::{fold_before, fold_nothing, four_calls_unfolded, two_tools_unfolded};
use crate::helpers::metered::{Metered, metered};
use crate::helpers::{TestApp, TestUser};

const RANGED: &str = "query($from: DateTime, $to: DateTime) { admin { stats(from: $from, to: $to) { invocations tokens errorRate byTool { tool { name } invocations tokens errors p95LatencyMs } byDay { day invocations tokens } byTier { tier invocations tokens } } } }";

/// One day's rollup of a tool, tier and writer's shard.
struct DayRollup {
    day: &'static str,
    tool: String,
    tier: &'static str,
    shard: i16,
    invocations: i64,
    errors: i64,
    /// Calls per latency bucket (50 ms, 100 ms, 200 ms, 300 ms, …, above 30 s).
    histogram: [i64; 12],
}

/// Writes the days' rollups as the meter does, in `platform_daily`. Every call is worth 10 tokens.
async fn write_rollups(app: &TestApp, days: &[DayRollup]) {
    let rows: Vec<String> = days
        .iter()
        .map(|d| {
            let cells: Vec<String> = d.histogram.iter().map(ToString::to_string).collect();
            format!(
                "('{}', '{}', '{}', {}, {}, {}, {}, '{{{}}}')",
                d.day,
                d.tool,
                d.tier,
                d.shard,
                d.invocations,
                d.errors,
                d.invocations * 10,
                cells.join(",")
            )
        })
        .collect();
    app.sql(&format!(
        "INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist) VALUES {}",
        rows.join(", ")
    ))
    .await;
}

fn in_bucket(bucket: usize, calls: i64) -> [i64; 12] {
    let mut histogram = [0; 12];
    histogram[bucket] = calls;
    histogram
}

async fn stats(app: &TestApp, admin: &TestUser, from: Value, to: Value) -> Value {
    app.object_as(
        &admin.access_token,
        RANGED,
        json!({ "from": from, "to": to }),
        &["admin", "stats"],
    )
    .await
}

#[tokio::test]
async fn ranges_of_whole_months_edge_days_or_no_bound_add_up_the_days_in_them_wherever_the_fold_is()
{
    let (app, root, a, b) = two_tools_unfolded().await;
    // Each row's invocations are a different power of ten, so a total names the rows it counted.
    let row = |day, tool: &String, tier, shard, invocations, errors, histogram| DayRollup {
        day,
        tool: tool.clone(),
        tier,
        shard,
        invocations,
        errors,
        histogram,
    };
    write_rollups(
        &app,
        &[
            row("2026-01-31", &a, "FREE", 0, 1, 0, in_bucket(0, 1)),
            row("2026-02-01", &a, "FREE", 0, 20, 0, in_bucket(0, 20)),
            row("2026-02-14", &b, "PRO", 0, 300, 3, in_bucket(3, 300)),
            row("2026-02-14", &b, "PRO", 1, 4_000, 0, in_bucket(0, 4_000)),
            row("2026-02-28", &a, "PRO", 0, 50_000, 0, in_bucket(0, 50_000)),
            row(
                "2026-03-01",
                &a,
                "FREE",
                0,
                600_000,
                0,
                in_bucket(0, 600_000),
            ),
            row(
                "2026-03-15",
                &b,
                "FREE",
                0,
                7_000_000,
                0,
                in_bucket(1, 7_000_000),
            ),
        ],
    )
    .await;
    let at = |day: &str| json!(format!("{day}T00:00:00Z"));

    // Nothing folded; January and February; those and half of March; every day.
    for folded_before in ["2025-01-01", "2026-03-01", "2026-03-16", "2026-04-02"] {
        fold_before(&app, folded_before).await;
        for (from, to, invocations, what) in [
            (
                at("2026-02-01"),
                at("2026-03-01"),
                54_320,
                "February, whole",
            ),
            (
                at("2026-01-31"),
                at("2026-03-02"),
                654_321,
                "February whole, a day either side",
            ),
            (
                at("2026-02-14"),
                json!("2026-02-28T12:00:00Z"),
                54_300,
                "within February, ending mid-day",
            ),
            (
                at("2026-02-20"),
                at("2026-03-10"),
                650_000,
                "across a month end, no month whole",
            ),
            (Value::Null, at("2026-03-01"), 54_321, "no start"),
            (at("2026-02-15"), Value::Null, 7_650_000, "no end"),
            (Value::Null, Value::Null, 7_654_321, "no bound"),
            (
                at("2025-01-01"),
                at("2025-03-01"),
                0,
                "months with no usage",
            ),
        ] {
            let stats = stats(&app, &root, from, to).await;
            assert_eq!(
                stats["invocations"], invocations,
                "{what}, folded before {folded_before}: {stats}"
            );
            assert_eq!(stats["tokens"], invocations * 10, "{what}");
            let by_day: i64 = stats["byDay"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["invocations"].as_i64().unwrap())
                .sum();
            assert_eq!(
                by_day, invocations,
                "{what}, folded before {folded_before}: the days add up"
            );
        }

        let stats = stats(&app, &root, at("2026-01-31"), at("2026-03-02")).await;
        assert_eq!(
            stats["byDay"],
            json!([
                { "day": "2026-01-31", "invocations": 1, "tokens": 10 },
                { "day": "2026-02-01", "invocations": 20, "tokens": 200 },
                { "day": "2026-02-14", "invocations": 4_300, "tokens": 43_000 },
                { "day": "2026-02-28", "invocations": 50_000, "tokens": 500_000 },
                { "day": "2026-03-01", "invocations": 600_000, "tokens": 6_000_000 },
            ])
        );
        assert_eq!(
            stats["byTier"],
            json!([
                { "tier": "FREE", "invocations": 600_021, "tokens": 6_000_210 },
                { "tier": "PRO", "invocations": 54_300, "tokens": 543_000 },
            ])
        );
        // B's 4 300 calls: 4 000 within 50 ms and 300 at 300 ms, in two shards of February's row. The
        // 95th percentile (the 4 085th call) is in the 300 ms bucket.
        assert_eq!(
            stats["byTool"],
            json!([
                { "tool": { "name": "A" }, "invocations": 650_021, "tokens": 6_500_210, "errors": 0, "p95LatencyMs": 50 },
                { "tool": { "name": "B" }, "invocations": 4_300, "tokens": 43_000, "errors": 3, "p95LatencyMs": 300 },
            ])
        );
        assert_eq!(stats["errorRate"], 3.0 / 654_321.0);
    }
    assert_eq!(
        app.sql_number(
            "SELECT sum(invocations)::bigint AS n FROM platform_monthly WHERE month = '2026-02-01'"
        )
        .await,
        54_320,
        "February's month holds its days once"
    );
}

/// The statistics of every range that holds `day` (where all calls were) are those of all time: `calls`
/// calls of two tools.
async fn same_in_every_range(
    app: &TestApp,
    root: &TestUser,
    day: NaiveDate,
    calls: i64,
    when: &str,
) {
    let month = day.format("%Y-%m-01").to_string();
    let next_month = (day.with_day(1).unwrap() + chrono::Months::new(1)).to_string();
    let next_day = day.succ_opt().unwrap().to_string();
    let day = day.to_string();
    let at = |day: &str| json!(format!("{day}T00:00:00Z"));
    let everything = stats(app, root, Value::Null, Value::Null).await;
    assert_eq!(everything["invocations"], calls, "{when}: {everything}");
    assert_eq!(everything["byTool"].as_array().unwrap().len(), 2);
    for (from, to) in [
        (at(&month), Value::Null),
        (at(&month), at(&next_month)),
        (at(&day), at(&next_day)),
        (at(&month), at(&next_day)),
        (Value::Null, at(&next_month)),
    ] {
        let ranged = stats(app, root, from.clone(), to.clone()).await;
        assert_eq!(ranged, everything, "{when}: from {from} to {to}");
    }
}

/// What the meter writes and the fold makes of it: the statistics agree whichever rows a range is read
/// from, before the fold, after it, and for a call metered after its day was folded (a late batch).
#[tokio::test]
async fn metered_calls_show_the_same_in_every_range_that_holds_their_day() {
    let Metered {
        app,
        root,
        tool,
        ada,
        ..
    } = four_calls_unfolded().await;
    app.rolled_up().await;
    let day: NaiveDate = app
        .sql_text("SELECT min(day)::text AS t FROM platform_daily")
        .await
        .parse()
        .unwrap();
    let monthly = "SELECT coalesce(sum(invocations), 0)::bigint AS n FROM platform_monthly";
    assert_eq!(
        app.sql_number(monthly).await,
        0,
        "the meter leaves the months to the fold"
    );
    same_in_every_range(&app, &root, day, 4, "not folded").await;

    let next_month = (day.with_day(1).unwrap() + chrono::Months::new(1)).to_string();
    fold_before(&app, &next_month).await;
    assert_eq!(app.sql_number(monthly).await, 4, "the month folded");
    same_in_every_range(&app, &root, day, 4, "the month folded").await;

    // The clock still stands on the folded day: this call's batch is late for it.
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    same_in_every_range(&app, &root, day, 5, "a late call, not rolled up yet").await;
    app.rolled_up().await;
    assert_eq!(
        app.sql_number(monthly).await,
        5,
        "the late call reached its month"
    );
    same_in_every_range(&app, &root, day, 5, "a late call").await;
    for table in ["platform_daily", "platform_monthly"] {
        let histogram =
            format!("SELECT sum(h)::bigint AS n FROM {table}, unnest(latency_hist) AS h");
        assert_eq!(app.sql_number(&histogram).await, 5, "{histogram}");
    }
}

/// A fold that starts while a metering transaction is still writing a day it folds (the user's and the
/// platform's rollups) waits for it, and folds what it committed; folds at once on two connections fold
/// each day once.
#[tokio::test]
async fn a_fold_waits_for_metering_in_flight_and_folds_each_day_once() {
    let app = TestApp::spawn().await;
    fold_nothing(&app).await;
    let root = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &root,
            json!({ "name": "A", "endpoint": "http://127.0.0.1:9/" }),
        )
        .await;
    let day = |day: &'static str, invocations| DayRollup {
        day,
        tool: tool.clone(),
        tier: "FREE",
        shard: 0,
        invocations,
        errors: 0,
        histogram: in_bucket(0, invocations),
    };
    write_rollups(&app, &[day("2026-03-02", 1)]).await;

    let ada = app.register("Ada", "ada@example.com").await;
    // As the meter writes: the user's daily rollup, then the platform's.
    let mut meter = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    meter
        .batch_execute(&format!(
            "BEGIN; INSERT INTO usage_daily (user_id, tool_id, day, invocations, tokens) \
             VALUES ('{}', '{tool}', '2026-03-10', 20, 200); \
             INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist) \
             VALUES ('2026-03-10', '{tool}', 'FREE', 1, 20, 0, 200, '{{20,0,0,0,0,0,0,0,0,0,0,0}}')",
            ada.id
        ))
        .await
        .unwrap();
    let fold = fold_before(&app, "2026-04-01");
    let commit = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while app
            .sql_number(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE usage_daily%'",
            )
            .await
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the fold never waited for the meter"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        meter.batch_execute("COMMIT").await.unwrap();
    };
    tokio::join!(fold, commit);
    let march =
        "SELECT sum(invocations)::bigint AS n FROM platform_monthly WHERE month = '2026-03-01'";
    assert_eq!(
        app.sql_number(march).await,
        21,
        "the committed day folded too"
    );
    for user_fold in [
        "SELECT sum(invocations)::bigint AS n FROM usage_monthly WHERE month = '2026-03-01'",
        "SELECT sum(invocations)::bigint AS n FROM usage_day_totals WHERE day = '2026-03-10'",
    ] {
        assert_eq!(
            app.sql_number(user_fold).await,
            20,
            "the user's committed day folded: {user_fold}"
        );
    }

    write_rollups(&app, &[day("2026-04-03", 300), day("2026-04-20", 4_000)]).await;
    tokio::join!(
        fold_before(&app, "2026-05-01"),
        fold_before(&app, "2026-05-01")
    );
    let april =
        "SELECT sum(invocations)::bigint AS n FROM platform_monthly WHERE month = '2026-04-01'";
    assert_eq!(app.sql_number(april).await, 4_300, "April folded once");
    assert_eq!(app.sql_number(march).await, 21, "March untouched");
    let stats = stats(
        &app,
        &root,
        json!("2026-03-01T00:00:00Z"),
        json!("2026-05-01T00:00:00Z"),
    )
    .await;
    assert_eq!(stats["invocations"], 4_321, "{stats}");
}

#[tokio::test]
async fn active_users_are_those_with_a_day_of_activity_in_range_whenever_their_last_day_was() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let mut days_of = Vec::new();
    for (name, days) in [
        ("twice", vec!["2026-02-10", "2026-03-20"]),
        ("late", vec!["2026-03-25"]),
        ("early", vec!["2026-02-05"]),
        ("never", vec![]),
    ] {
        let user = app.register(name, &format!("{name}@example.com")).await;
        for day in days {
            days_of.push(format!("('{day}', '{}')", user.id));
        }
    }
    app.sql(&format!(
        "INSERT INTO user_activity (day, user_id) VALUES {}; \
         INSERT INTO user_last_active (user_id, day) SELECT user_id, max(day) FROM user_activity GROUP BY user_id",
        days_of.join(", ")
    ))
    .await;
    let at = |day: &str| json!(format!("{day}T00:00:00Z"));

    for (from, to, active, what) in [
        (Value::Null, Value::Null, 3, "all time"),
        (
            at("2026-02-01"),
            at("2026-03-01"),
            2,
            "twice (active since) and early",
        ),
        (at("2026-03-01"), Value::Null, 2, "twice and late"),
        (
            at("2026-02-06"),
            at("2026-03-21"),
            1,
            "twice, on its last day",
        ),
        (
            at("2026-02-11"),
            at("2026-03-01"),
            0,
            "twice was active only either side",
        ),
        (Value::Null, at("2026-02-06"), 1, "early"),
    ] {
        let body = app
            .graphql_as(
                &root.access_token,
                "query($from: DateTime, $to: DateTime) { admin { stats(from: $from, to: $to) { users { active } } } }",
                json!({ "from": from, "to": to }),
            )
            .await;
        assert_eq!(
            body["data"]["admin"]["stats"]["users"]["active"], active,
            "{what}: {body}"
        );
    }
}

/// The rollups keep each user's last active day: a call on a later day moves it forward, never back.
#[tokio::test]
async fn a_users_last_active_day_moves_forward_with_their_calls_and_never_back() {
    // The upstream is bound so that it keeps serving until the test ends.
    let Metered {
        app,
        upstream: _upstream,
        tool,
        ada,
        ..
    } = metered().await;
    let last_day =
        "SELECT (day - (SELECT min(day) FROM user_activity))::bigint AS n FROM user_last_active";

    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    app.rolled_up().await;
    assert_eq!(app.sql_number(last_day).await, 0, "the day of the call");

    // As if the last call had been ten days ago: today's first call moves the day forward.
    app.sql("UPDATE user_last_active SET day = day - 10; DELETE FROM user_activity")
        .await;
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    app.rolled_up().await;
    assert_eq!(app.sql_number(last_day).await, 0, "moved to today");

    // A day later than today stays: a late batch of an earlier day never moves it back.
    app.sql("UPDATE user_last_active SET day = day + 10; DELETE FROM user_activity")
        .await;
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    app.rolled_up().await;
    assert_eq!(app.sql_number(last_day).await, 10, "kept");
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM user_last_active")
            .await,
        1
    );
}
