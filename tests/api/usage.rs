//! Usage history, summaries and the live feed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::helpers::upstream::Upstream;
use crate::helpers::{TestApp, TestUser, error_code};

const USAGE: &str = "query($from: DateTime, $to: DateTime, $tool: ID, $first: Int, $after: String) { usage(from: $from, to: $to, toolId: $tool, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id tokensUsed status latencyMs createdAt tool { id name } } } } }";
const SUMMARY: &str = "query($from: DateTime, $to: DateTime) { usageSummary(from: $from, to: $to) { totalTokens totalInvocations byTool { tool { id } tokens invocations } byDay { day tokens invocations } tokenLimit tokensRemaining } }";

struct Setup {
    app: TestApp,
    _upstream: Upstream,
    user: TestUser,
    /// Tools answering 42 and 7 tokens.
    tools: [String; 2],
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&user).await;
    let a = app
        .create_tool(
            &admin,
            json!({ "name": "Alpha", "endpoint": upstream.url("/ok") }),
        )
        .await;
    let b = app
        .create_tool(&admin, json!({ "name": "Beta", "endpoint": upstream.url("/custom"), "tokensPath": "meta.tokens.count" }))
        .await;
    Setup {
        app,
        _upstream: upstream,
        user,
        tools: [a, b],
    }
}

impl Setup {
    async fn invoke(&self, tool: usize) -> Value {
        let body = self
            .app
            .invoke(&self.user.access_token, &self.tools[tool], json!({}), None)
            .await;
        assert_eq!(body["data"]["invokeTool"]["status"], "SUCCESS", "{body}");
        body["data"]["invokeTool"].clone()
    }

    async fn usage(&self, variables: Value) -> Value {
        self.app
            .graphql_as(&self.user.access_token, USAGE, variables)
            .await
    }

    fn at(&self, text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }
}

#[tokio::test]
async fn history_pages_newest_first_without_gaps_or_repeats() {
    let s = setup().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(s.invoke(i % 2).await["id"].as_str().unwrap().to_owned());
        s.app.clock.advance(chrono::Duration::seconds(1));
    }

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let body = s.usage(json!({ "first": 10, "after": after })).await;
        let page = &body["data"]["usage"];
        assert_eq!(page["totalCount"], 25, "{body}");
        for edge in page["edges"].as_array().unwrap() {
            seen.push(edge["node"]["id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }

    ids.reverse();
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "newest first, every entry once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
}

#[tokio::test]
async fn the_tools_of_a_page_load_in_one_batch() {
    let s = setup().await;
    for i in 0..10 {
        s.invoke(i % 2).await;
    }
    let before = s.app.state.loader_stats.tool_batches.load(Ordering::SeqCst);

    let body = s.usage(json!({ "first": 10 })).await;

    let names: HashSet<&str> = body["data"]["usage"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["tool"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["Alpha", "Beta"]));
    assert_eq!(
        s.app.state.loader_stats.tool_batches.load(Ordering::SeqCst) - before,
        1
    );
}

#[tokio::test]
async fn date_filters_include_from_and_exclude_to_and_tool_filters_narrow() {
    let s = setup().await;
    s.app.clock.set(s.at("2026-03-01T10:00:00Z"));
    s.invoke(0).await;
    s.app.clock.set(s.at("2026-03-01T11:00:00Z"));
    s.invoke(1).await;
    s.app.clock.set(s.at("2026-03-01T12:00:00Z"));
    s.invoke(0).await;

    let count = |body: &Value| body["data"]["usage"]["totalCount"].as_i64().unwrap();
    let exact = s
        .usage(json!({ "from": "2026-03-01T10:00:00Z", "to": "2026-03-01T12:00:00Z" }))
        .await;
    let empty = s
        .usage(json!({ "from": "2026-03-01T11:00:00Z", "to": "2026-03-01T11:00:00Z" }))
        .await;
    let tool = s.usage(json!({ "tool": s.tools[0] })).await;
    let reversed = s
        .usage(json!({ "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z" }))
        .await;
    let bad_cursor = s.usage(json!({ "after": "abc" })).await;

    assert_eq!(count(&exact), 2, "from is included, to is excluded");
    assert_eq!(
        exact["data"]["usage"]["edges"][0]["node"]["createdAt"],
        "2026-03-01T11:00:00+00:00"
    );
    assert_eq!(count(&empty), 0);
    assert_eq!(count(&tool), 2);
    assert_eq!(error_code(&reversed), "BAD_USER_INPUT");
    assert_eq!(reversed["errors"][0]["extensions"]["field"], "from");
    assert_eq!(error_code(&bad_cursor), "BAD_USER_INPUT");
}

#[tokio::test]
async fn summaries_equal_a_brute_force_sum_over_the_log_for_any_range() {
    let s = setup().await;
    let start = s.at("2026-05-10T22:30:00Z");
    for i in 0..30 {
        s.app.clock.set(start + chrono::Duration::hours(5 * i));
        s.invoke((i % 3 == 0) as usize).await;
    }
    let ranges = [
        (None, None),
        (Some("2026-05-11T03:15:00Z"), Some("2026-05-14T09:45:00Z")),
        (Some("2026-05-11T00:00:00Z"), Some("2026-05-13T00:00:00Z")),
        (Some("2026-05-12T01:00:00Z"), Some("2026-05-12T20:00:00Z")),
        (Some("2026-05-15T00:00:00Z"), None),
    ];

    for (from, to) in ranges {
        let body = s
            .app
            .graphql_as(
                &s.user.access_token,
                SUMMARY,
                json!({ "from": from, "to": to }),
            )
            .await;
        let summary = &body["data"]["usageSummary"];
        let condition = format!(
            "user_id = '{}'{}{}",
            s.user.id,
            from.map(|f| format!(" AND created_at >= '{f}'"))
                .unwrap_or_default(),
            to.map(|t| format!(" AND created_at < '{t}'"))
                .unwrap_or_default()
        );
        let tokens = s.app.sql_number(&format!("SELECT COALESCE(sum(tokens_used), 0)::bigint AS n FROM usage_events WHERE {condition}")).await;
        let invocations = s
            .app
            .sql_number(&format!(
                "SELECT count(*) AS n FROM usage_events WHERE {condition}"
            ))
            .await;
        assert_eq!(summary["totalTokens"], tokens, "{from:?}..{to:?}: {body}");
        assert_eq!(summary["totalInvocations"], invocations, "{from:?}..{to:?}");
        let by_day: i64 = summary["byDay"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["tokens"].as_i64().unwrap())
            .sum();
        let by_tool: i64 = summary["byTool"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tokens"].as_i64().unwrap())
            .sum();
        assert_eq!(by_day, tokens);
        assert_eq!(by_tool, tokens);
    }
    let all = s
        .app
        .graphql_as(&s.user.access_token, SUMMARY, json!({}))
        .await;
    assert_eq!(all["data"]["usageSummary"]["tokenLimit"], 10_000);
    let first_day = &all["data"]["usageSummary"]["byDay"][0];
    assert_eq!(first_day["day"], "2026-05-10");
    assert_eq!(first_day["invocations"], 1);
}

/// A call on 2025-01-01 and one on 2026-01-01; the summary after them.
async fn a_call_in_2025_and_one_in_2026(s: &Setup) -> Value {
    s.app.clock.set(s.at("2025-01-01T12:00:00Z"));
    s.invoke(0).await;
    s.app.clock.set(s.at("2026-01-01T12:00:00Z"));
    s.invoke(0).await;
    s.app
        .graphql_as(&s.user.access_token, SUMMARY, json!({}))
        .await
}

#[tokio::test]
async fn retention_removes_old_raw_rows_but_keeps_the_rollups() {
    let s = setup().await;
    let before = a_call_in_2025_and_one_in_2026(&s).await;
    // Retention removes rows once they are rolled up (other tests' transactions can hold rolls back).
    s.app.rolled_up().await;

    let deleted =
        joyfull_hub::usage::service::apply_retention(&s.app.state, s.at("2026-03-01T00:00:00Z"))
            .await
            .unwrap();

    let after = s
        .app
        .graphql_as(&s.user.access_token, SUMMARY, json!({}))
        .await;
    assert_eq!(deleted, 1, "only the row older than 400 days");
    assert_eq!(
        s.app
            .sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        1
    );
    assert_eq!(
        after["data"]["usageSummary"]["totalTokens"],
        before["data"]["usageSummary"]["totalTokens"]
    );
    assert_eq!(after["data"]["usageSummary"]["totalTokens"], 84);
}

/// Retention removes only rows already in the rollups: a row the roller cannot add yet (an older
/// transaction is still open) stays, with its month's partition, until a later sweep.
#[tokio::test]
async fn retention_keeps_rows_not_rolled_up_until_they_are() {
    let s = setup().await;
    let held = crate::helpers::rolls::HeldBack::start(&s.app).await;
    let before = a_call_in_2025_and_one_in_2026(&s).await;
    joyfull_hub::usage::service::ensure_months(&s.app.state, s.at("2025-01-01T12:00:00Z"))
        .await
        .unwrap();
    let sweep =
        || joyfull_hub::usage::service::apply_retention(&s.app.state, s.at("2026-04-01T00:00:00Z"));

    assert_eq!(sweep().await.unwrap(), 0, "not rolled up: kept");
    let rows = "SELECT count(*) AS n FROM usage_events";
    assert_eq!(s.app.sql_number(rows).await, 2);
    let summary = s
        .app
        .graphql_as(&s.user.access_token, SUMMARY, json!({}))
        .await;
    assert_eq!(summary, before);

    held.end().await;
    s.app.rolled_up().await;
    assert_eq!(sweep().await.unwrap(), 1, "rolled up: gone");
    assert_eq!(s.app.sql_number(rows).await, 1);
    let summary = s
        .app
        .graphql_as(&s.user.access_token, SUMMARY, json!({}))
        .await;
    assert_eq!(summary, before, "the rollups stay");
}

#[tokio::test]
async fn usage_needs_a_logged_in_caller() {
    let app = TestApp::spawn().await;
    let usage = app.graphql("{ usage { totalCount } }").await;
    let summary = app.graphql("{ usageSummary { totalTokens } }").await;
    assert_eq!(error_code(&usage), "UNAUTHENTICATED");
    assert_eq!(error_code(&summary), "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metered_invocation_reaches_the_callers_websocket_within_a_second() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let s = setup().await;
    let other = s.app.register("Bob", "bob@example.com").await;
    s.app.subscribe_free(&other).await;
    s.app.state.live.wait_listening().await;
    let mut request = format!("ws://{}/graphql/ws", s.app.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |value: Value| Message::text(value.to_string());
    socket
        .send(send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", s.user.access_token) } })))
        .await
        .unwrap();
    socket
        .send(send(json!({ "id": "live", "type": "subscribe", "payload": { "query": "subscription { usageEvents { id tokensUsed status tool { name } } }" } })))
        .await
        .unwrap();
    // The subscription is registered once the server acknowledged the connection and a moment passed.
    loop {
        if let Some(Ok(Message::Text(text))) = socket.next().await
            && text.contains("connection_ack")
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Someone else's invocation must not show up; the caller's must, within a second.
    s.app
        .invoke(&other.access_token, &s.tools[0], json!({}), None)
        .await;
    let invocation = s.invoke(1).await;
    // The answer is sent after the metering transaction committed: count from there.
    let metered_at = std::time::Instant::now();
    let event = loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "next" {
                break value;
            }
        }
    };

    assert!(
        metered_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        metered_at.elapsed()
    );
    assert_eq!(
        event["payload"]["data"]["usageEvents"]["id"],
        invocation["id"]
    );
    assert_eq!(event["payload"]["data"]["usageEvents"]["tokensUsed"], 7);
    assert_eq!(
        event["payload"]["data"]["usageEvents"]["tool"]["name"],
        "Beta"
    );
}

#[tokio::test]
async fn the_generator_fills_the_log_and_its_rollups_agree_with_it() {
    let app = TestApp::spawn().await;
    let plan = joyfull_hub::dev::generate::Plan {
        users: 5,
        rows: 3000,
        tools: 3,
        days: 30,
    };

    joyfull_hub::dev::generate::generate(&app.state.pool, &app.state.config, plan)
        .await
        .unwrap();

    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        3000
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM users WHERE email LIKE 'gen-%'")
            .await,
        5
    );
    assert_eq!(
        app.sql_number("SELECT sum(invocations)::bigint AS n FROM usage_daily")
            .await,
        3000,
        "rollups cover every row"
    );
    assert_eq!(
        app.sql_number("SELECT sum(tokens)::bigint AS n FROM usage_daily")
            .await,
        app.sql_number("SELECT sum(tokens_used)::bigint AS n FROM usage_events")
            .await
    );
    let folded_days = app
        .sql_number(
            "SELECT sum(invocations)::bigint AS n FROM usage_daily \
             WHERE day < (SELECT folded_before FROM platform_fold)",
        )
        .await;
    assert!(folded_days > 0, "the generated days reach before the fold");
    for table in ["usage_monthly", "usage_day_totals"] {
        assert_eq!(
            app.sql_number(&format!(
                "SELECT sum(invocations)::bigint AS n FROM {table}"
            ))
            .await,
            folded_days,
            "{table} holds the folded days"
        );
    }
    let busiest = app
        .sql_number(
            "SELECT max(c) AS n FROM (SELECT count(*) AS c FROM usage_events GROUP BY user_id) s",
        )
        .await;
    assert!(
        busiest > 3000 / 5,
        "usage is skewed towards a few users ({busiest})"
    );
    let login = app
        .login("gen-1@example.com", joyfull_hub::dev::generate::PASSWORD)
        .await;
    assert!(login["data"]["login"]["accessToken"].is_string(), "{login}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_reconnects_when_its_database_connection_dies() {
    use async_graphql::futures_util::StreamExt;
    use joyfull_hub::db::listener::{self, Liveness};

    let s = setup().await;
    let live = std::sync::Arc::new(joyfull_hub::usage::live::feed());
    let liveness = Liveness {
        ping_every: Duration::from_millis(200),
        ping_deadline: Duration::from_millis(500),
    };
    let caches = std::sync::Arc::new(joyfull_hub::cache::Caches::default());
    let listener = listener::spawn(s.app.db.url.clone(), vec![live.clone(), caches], liveness);
    live.wait_listening().await;

    // Kill every listening connection of this database, as a failover or a network cut would.
    s.app
        .sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut events = Box::pin(live.stream());
    let received = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never came back"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let invocation = s.invoke(0).await;
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(500), events.next()).await
        {
            break (event, invocation);
        }
    };

    assert_eq!(
        received.0.id.to_string(),
        received.1["id"].as_str().unwrap()
    );
    listener.abort();
}

#[tokio::test]
async fn rows_live_in_their_months_partition_and_retention_drops_whole_months() {
    let s = setup().await;
    let partition_of_rows = async || {
        s.app
            .sql_text(
                "SELECT string_agg(DISTINCT tableoid::regclass::text, ',') AS t FROM usage_events \
                 WHERE created_at < '2025-02-01'",
            )
            .await
    };
    // A month without a partition yet: its rows wait in the default partition.
    let before = a_call_in_2025_and_one_in_2026(&s).await;
    assert_eq!(partition_of_rows().await, "usage_events_default");
    // The sweeper's step makes the month's partition and moves the rows into it.
    joyfull_hub::usage::service::ensure_months(&s.app.state, s.at("2025-01-01T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(partition_of_rows().await, "usage_events_2025_01");

    // 400 days before 2026-04-01 is 2025-02-25: January 2025 is wholly past it. Its rows go once
    // they are rolled up (other tests' transactions can hold rolls back).
    s.app.rolled_up().await;
    let deleted =
        joyfull_hub::usage::service::apply_retention(&s.app.state, s.at("2026-04-01T00:00:00Z"))
            .await
            .unwrap();

    assert_eq!(deleted, 1);
    assert_eq!(
        s.app
            .sql_number("SELECT count(*) AS n FROM pg_class WHERE relname = 'usage_events_2025_01'")
            .await,
        0,
        "the month's partition is dropped, not emptied row by row"
    );
    assert_eq!(
        s.app
            .sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        1
    );
    let after = s
        .app
        .graphql_as(&s.user.access_token, SUMMARY, json!({}))
        .await;
    assert_eq!(
        after["data"]["usageSummary"]["totalTokens"], before["data"]["usageSummary"]["totalTokens"],
        "the rollups stay"
    );
}

#[tokio::test]
async fn pages_spanning_months_and_partitions_miss_nothing() {
    let s = setup().await;
    // Rows 20 days apart over most of a year, some in the future of where the clock ends: each page
    // of 3 crosses the month or so a page is first looked for in.
    let mut ids = Vec::new();
    s.app.clock.set(s.at("2026-01-03T08:00:00Z"));
    for i in 0..14 {
        ids.push(s.invoke(i % 2).await["id"].as_str().unwrap().to_owned());
        s.app.clock.advance(chrono::Duration::days(20));
    }
    joyfull_hub::usage::service::ensure_months(&s.app.state, s.at("2026-05-01T00:00:00Z"))
        .await
        .unwrap();
    s.app.clock.set(s.at("2026-06-01T00:00:00Z"));

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = s.usage(json!({ "first": 3, "after": after })).await;
        let page = &body["data"]["usage"];
        for edge in page["edges"].as_array().unwrap() {
            seen.push(edge["node"]["id"].as_str().unwrap().to_owned());
        }
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every entry once, across months");
}
