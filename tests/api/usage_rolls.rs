//! Rollups added after the answer (`usage::roll`): every read counts the calls the roller has not
//! added yet, once, and answers the same after it adds them; rolls at once on two connections add
//! each call once, and reads during them never count a call twice or miss it.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::metered::{Metered, metered};
use crate::helpers::rolls::HeldBack;
use joyfull_hub::usage::roll::Turn;
use joyfull_hub::usage::roller;

const SUMMARY: &str = "query($from: DateTime, $to: DateTime) { usageSummary(from: $from, to: $to) { totalTokens totalInvocations byTool { tool { id } tokens invocations } byDay { day tokens invocations } } }";
const STATS: &str = "{ admin { stats { users { active } invocations tokens errorRate byTool { tool { id } invocations errors p95LatencyMs } byDay { day invocations } byTier { tier invocations tokens } } } }";

async fn summary(app: &TestApp, token: &str, from: Value, to: Value) -> Value {
    let body = app
        .graphql_as(token, SUMMARY, json!({ "from": from, "to": to }))
        .await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["usageSummary"].clone()
}

async fn stats(app: &TestApp, token: &str) -> Value {
    let body = app.graphql_as(token, STATS, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["admin"]["stats"].clone()
}

async fn rolled_up_invocations(app: &TestApp) -> i64 {
    app.sql_number("SELECT coalesce(sum(invocations), 0)::bigint AS n FROM usage_daily")
        .await
}

/// Ranges whose whole days hold today (read from the rollups and the rows not rolled up), and one
/// that starts inside today (today read from the raw log alone).
fn ranges(app: &TestApp) -> Vec<(Value, Value)> {
    let now = app.clock_now();
    let today = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let day = chrono::Duration::days(1);
    vec![
        (Value::Null, Value::Null),
        (json!(today - day), json!(today + day * 2)),
        (
            json!(today - day + chrono::Duration::hours(12)),
            json!(today + day + chrono::Duration::hours(6)),
        ),
        (json!(today + chrono::Duration::seconds(1)), Value::Null),
    ]
}

#[tokio::test]
async fn reads_count_calls_not_rolled_up_yet_once_and_answer_the_same_after_the_roll() {
    // The upstream is bound so that it keeps serving until the test ends.
    let Metered {
        app,
        upstream: _upstream,
        root,
        tool,
        ada,
    } = metered().await;
    app.clock.set(
        app.clock_now()
            .date_naive()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc(),
    );
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    app.rolled_up().await;
    assert_eq!(rolled_up_invocations(&app).await, 1);

    let held = HeldBack::start(&app).await;
    for _ in 0..3 {
        let body = app.invoke(&ada.access_token, &tool, json!({}), None).await;
        assert_eq!(body["data"]["invokeTool"]["status"], "SUCCESS", "{body}");
    }
    tokio::time::sleep(roller::EVERY * 2).await;
    roller::roll_up(&app.state, Turn::Wait).await.unwrap();
    assert_eq!(
        rolled_up_invocations(&app).await,
        1,
        "the roller left the three calls out while an older transaction was open"
    );
    let tokens = app
        .sql_number("SELECT sum(tokens_used)::bigint AS n FROM usage_events")
        .await;
    assert!(tokens > 0);

    let mut before = Vec::new();
    for (from, to) in ranges(&app) {
        let totals = summary(&app, &ada.access_token, from.clone(), to.clone()).await;
        assert_eq!(totals["totalInvocations"], 4, "{from} to {to}: {totals}");
        assert_eq!(totals["totalTokens"], tokens, "{from} to {to}: {totals}");
        assert_eq!(totals["byTool"][0]["invocations"], 4, "{totals}");
        assert_eq!(totals["byDay"][0]["invocations"], 4, "{totals}");
        before.push(totals);
    }
    let platform = stats(&app, &root.access_token).await;
    assert_eq!(platform["invocations"], 4, "{platform}");
    assert_eq!(platform["tokens"], tokens, "{platform}");
    assert_eq!(platform["users"]["active"], 1, "{platform}");
    assert_eq!(platform["byTool"][0]["invocations"], 4, "{platform}");
    assert_eq!(platform["byTier"][0]["invocations"], 4, "{platform}");
    assert_eq!(platform["byDay"][0]["invocations"], 4, "{platform}");
    assert!(
        platform["byTool"][0]["p95LatencyMs"].is_number(),
        "{platform}"
    );

    held.end().await;
    app.rolled_up().await;
    assert_eq!(rolled_up_invocations(&app).await, 4);
    for ((from, to), expected) in ranges(&app).into_iter().zip(before) {
        let totals = summary(&app, &ada.access_token, from.clone(), to.clone()).await;
        assert_eq!(totals, expected, "{from} to {to}, rolled up");
    }
    assert_eq!(stats(&app, &root.access_token).await, platform, "rolled up");
}

#[tokio::test]
async fn rolls_at_once_add_each_call_once_and_reads_during_them_count_each_once() {
    // The upstream is bound so that it keeps serving until the test ends.
    let Metered {
        app,
        upstream: _upstream,
        root,
        tool,
        ada,
    } = metered().await;
    let held = HeldBack::start(&app).await;
    for _ in 0..20 {
        let call = app.invoke(&ada.access_token, &tool, json!({}), None).await;
        assert_eq!(call["data"]["invokeTool"]["status"], "SUCCESS", "{call}");
    }
    assert_eq!(rolled_up_invocations(&app).await, 0);
    held.end().await;

    let rolls = async {
        let (a, b) = tokio::join!(
            roller::roll_up(&app.state, Turn::Skip),
            roller::roll_up(&app.state, Turn::Wait)
        );
        a.unwrap();
        b.unwrap();
    };
    let reads = async {
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (totals, platform) = tokio::join!(
                summary(&app, &ada.access_token, Value::Null, Value::Null),
                stats(&app, &root.access_token)
            );
            seen.push((
                totals["totalInvocations"].clone(),
                platform["invocations"].clone(),
            ));
        }
        seen
    };
    let ((), seen) = tokio::join!(rolls, reads);
    for (user, platform) in seen {
        assert_eq!((user, platform), (json!(20), json!(20)));
    }
    app.rolled_up().await;
    for (sql, expected) in [
        ("SELECT sum(invocations)::bigint AS n FROM usage_daily", 20),
        (
            "SELECT sum(invocations)::bigint AS n FROM platform_daily",
            20,
        ),
        (
            "SELECT sum(h)::bigint AS n FROM platform_daily, unnest(latency_hist) AS h",
            20,
        ),
        ("SELECT count(*) AS n FROM user_activity", 1),
        ("SELECT count(*) AS n FROM user_last_active", 1),
    ] {
        assert_eq!(app.sql_number(sql).await, expected, "{sql}");
    }
}

/// A backlog larger than one roll takes (after an old transaction held the rolls back, say) is rolled
/// up in bounded rolls, each ending between two transactions, and adds up to the log.
#[tokio::test]
async fn a_backlog_is_rolled_up_in_bounded_rolls_that_add_up_to_the_log() {
    // The upstream is bound so that it keeps serving until the test ends.
    let Metered {
        app,
        upstream: _upstream,
        tool,
        ada,
        ..
    } = metered().await;
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    let held = HeldBack::start(&app).await;
    // Three transactions of 10 000 rows each: more than one roll takes.
    for _ in 0..3 {
        app.sql(&format!(
            "INSERT INTO usage_events (id, user_id, tool_id, tokens_used, status, latency_ms, created_at, tier) \
             SELECT gen_random_uuid(), '{}', '{tool}', 2, 'SUCCESS', 40, now(), 'FREE' \
             FROM generate_series(1, 10000)",
            ada.id
        ))
        .await;
    }
    held.end().await;
    const {
        assert!(
            30_000 > joyfull_hub::usage::roll::MOST_ROWS,
            "the backlog must be larger than one roll"
        )
    };
    app.rolled_up().await;
    for (sql, expected) in [
        (
            "SELECT sum(invocations)::bigint AS n FROM usage_daily",
            30_001,
        ),
        (
            "SELECT sum(invocations)::bigint AS n FROM platform_daily",
            30_001,
        ),
        (
            "SELECT sum(tokens)::bigint - (SELECT sum(tokens_used) FROM usage_events) AS n FROM usage_daily",
            0,
        ),
    ] {
        assert_eq!(app.sql_number(sql).await, expected, "{sql}");
    }
}
