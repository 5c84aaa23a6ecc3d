//! The token limit with upstreams that report more than a call reserved (see `gateway::budget`): calls
//! that state their maximum never pass the limit; calls that do not pass it by at most their recorded
//! overruns. Crossing 80 % and 100 % of a period's tokens is recorded once per period.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::upstream::Upstream;
use crate::helpers::{Catalogue, TestApp, error_code};

/// Fifty calls at once from one Free user with a 100-token limit, to a tool whose upstream reports 42
/// tokens per call; their answers.
async fn fifty_parallel(app: &Arc<TestApp>, token: &str, tool: &str, input: Value) -> Vec<Value> {
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (app, token, tool, input) = (
                app.clone(),
                token.to_owned(),
                tool.to_owned(),
                input.clone(),
            );
            tokio::spawn(async move { app.invoke(&token, &tool, input, None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    answers
}

async fn limited_catalogue(app: &TestApp, upstream: &Upstream) -> Catalogue {
    let catalogue = app.catalogue(upstream.url("/ok")).await;
    app.sql(&format!(
        "UPDATE tools SET estimated_tokens = 10, max_tokens_per_call = 1000 WHERE id = '{}'",
        catalogue.tool
    ))
    .await;
    app.sql("UPDATE plans SET token_limit = 100 WHERE tier = 'FREE'")
        .await;
    catalogue
}

fn successes(answers: &[Value]) -> usize {
    answers
        .iter()
        .filter(|a| a["data"]["invokeTool"]["status"] == "SUCCESS")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_calls_that_state_their_maximum_never_pass_the_limit() {
    let app = Arc::new(TestApp::spawn().await);
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = limited_catalogue(&app, &upstream).await;
    // Reserves 5 + the input's 4 tokens = 9; the upstream reports 42.
    let input = json!({ "max_tokens": 5 });

    let answers = fifty_parallel(&app, &user.access_token, &tool, input).await;

    for answer in &answers {
        if answer["data"]["invokeTool"]["status"] == "SUCCESS" {
            assert_eq!(answer["data"]["invokeTool"]["tokensUsed"], 9, "{answer}");
        } else {
            assert_eq!(error_code(answer), "QUOTA_EXCEEDED", "{answer}");
        }
    }
    let succeeded = i64::try_from(successes(&answers)).unwrap();
    assert_eq!(succeeded, 11, "100 / 9 calls fit");
    let used = app
        .sql_number("SELECT tokens_used AS n FROM subscriptions")
        .await;
    assert_eq!(used, 99);
    assert!(used <= 100);
    assert_eq!(
        app.sql_number("SELECT coalesce(sum(tokens_overrun), 0)::bigint AS n FROM usage_events")
            .await,
        33 * succeeded,
        "each call's overrun is recorded, uncharged"
    );
    assert_eq!(
        app.tokens_reserved_once_idle().await,
        0,
        "what slices held unspent is given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_calls_without_a_maximum_pass_it_by_at_most_their_recorded_overruns() {
    let app = Arc::new(TestApp::spawn().await);
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = limited_catalogue(&app, &upstream).await;

    let answers = fifty_parallel(&app, &user.access_token, &tool, json!({})).await;

    let succeeded = i64::try_from(successes(&answers)).unwrap();
    let used = app
        .sql_number("SELECT tokens_used AS n FROM subscriptions")
        .await;
    let overruns = app
        .sql_number("SELECT coalesce(sum(tokens_overrun), 0)::bigint AS n FROM usage_events")
        .await;
    assert!(
        succeeded >= 3,
        "at least the calls whose reservations fit at once: {succeeded}"
    );
    assert!(
        succeeded <= 10,
        "reservations of 10 never pass 100: {succeeded}"
    );
    assert_eq!(used, 42 * succeeded, "each call is charged what it used");
    assert_eq!(overruns, 32 * succeeded, "and its overrun is recorded");
    assert!(
        used - 100 <= overruns,
        "the limit is passed by at most the overruns: used {used}, overruns {overruns}"
    );
    assert_eq!(
        app.tokens_reserved_once_idle().await,
        0,
        "what slices held unspent is given back"
    );
}

#[tokio::test]
async fn crossing_80_and_100_percent_is_recorded_once_per_period() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = app.catalogue(upstream.url("/ten")).await;
    app.set_estimate(&tool, 10).await;
    app.sql("UPDATE plans SET token_limit = 100 WHERE tier = 'FREE'")
        .await;
    let events =
        |percent: i64| format!("SELECT count(*) AS n FROM quota_events WHERE percent = {percent}");

    for _ in 0..7 {
        let answer = app.invoke(&user.access_token, &tool, json!({}), None).await;
        assert_eq!(
            answer["data"]["invokeTool"]["status"], "SUCCESS",
            "{answer}"
        );
    }
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM quota_events")
            .await,
        0
    );
    app.invoke(&user.access_token, &tool, json!({}), None).await;
    assert_eq!(
        app.sql_number(&events(80)).await,
        1,
        "the 8th call reaches 80 %"
    );
    assert_eq!(
        app.sql_number("SELECT tokens_used AS n FROM quota_events WHERE percent = 80")
            .await,
        80
    );
    app.invoke(&user.access_token, &tool, json!({}), None).await;
    app.invoke(&user.access_token, &tool, json!({}), None).await;
    let refused = app.invoke(&user.access_token, &tool, json!({}), None).await;
    assert_eq!(error_code(&refused), "QUOTA_EXCEEDED", "{refused}");
    assert_eq!(app.sql_number(&events(80)).await, 1, "once per period");
    assert_eq!(app.sql_number(&events(100)).await, 1);
    assert_eq!(
        app.sql_number("SELECT token_limit AS n FROM quota_events WHERE percent = 100")
            .await,
        100
    );

    // The next period counts afresh.
    app.clock.advance(chrono::Duration::days(32));
    for _ in 0..8 {
        let answer = app.invoke(&user.access_token, &tool, json!({}), None).await;
        assert_eq!(
            answer["data"]["invokeTool"]["status"], "SUCCESS",
            "{answer}"
        );
    }
    assert_eq!(app.sql_number(&events(80)).await, 2);
    assert_eq!(
        app.sql_number("SELECT count(DISTINCT period_start) AS n FROM quota_events")
            .await,
        2
    );
}

#[tokio::test]
async fn a_tools_maximum_per_call_is_checked_and_shown() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let create = |max: Value| {
        let app = &app;
        let token = root.access_token.clone();
        async move {
            app.graphql_as(
                &token,
                "mutation($i: ToolInput!) { createTool(input: $i) { maxTokensPerCall } }",
                json!({ "i": { "name": format!("Tool {max}"), "endpoint": "http://127.0.0.1:9/", "maxTokensPerCall": max } }),
            )
            .await
        }
    };

    let zero = create(json!(0)).await;
    let huge = create(json!(100_000_001)).await;
    let fine = create(json!(4096)).await;

    for refused in [&zero, &huge] {
        assert_eq!(error_code(refused), "BAD_USER_INPUT", "{refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["field"],
            "maxTokensPerCall"
        );
    }
    assert_eq!(
        fine["data"]["createTool"]["maxTokensPerCall"], 4096,
        "{fine}"
    );
    assert_eq!(app.sql_number("SELECT count(*) AS n FROM tools").await, 1);
}
