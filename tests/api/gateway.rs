//! `invokeTool` against a real local upstream: routing, denials, quota, failures, metering, idempotency.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::upstream::Upstream;
use crate::helpers::{TestApp, TestUser, error_code, error_message};

struct Setup {
    app: TestApp,
    upstream: Upstream,
    admin: TestUser,
    user: TestUser,
}

async fn setup() -> Setup {
    let app = TestApp::spawn_with(|c| {
        c.gateway.breaker_threshold = 3;
        c.gateway.breaker_cooldown = Duration::from_millis(300);
    })
    .await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    Setup {
        app,
        upstream,
        admin,
        user,
    }
}

impl Setup {
    async fn tool(&self, path: &str, extra: serde_json::Value) -> String {
        let mut input = json!({ "name": format!("Tool {path} {}", uuid::Uuid::new_v4()), "endpoint": self.upstream.url(path) });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        self.app.create_tool(&self.admin, input).await
    }

    async fn usage_rows(&self, filter: &str) -> i64 {
        self.app
            .sql_number(&format!(
                "SELECT count(*) AS n FROM usage_events WHERE {filter}"
            ))
            .await
    }

    /// `count` more users on the Free plan.
    async fn subscribed_users(&self, count: usize) -> Vec<TestUser> {
        let mut users = Vec::with_capacity(count);
        for n in 0..count {
            let user = self
                .app
                .register("Other", &format!("other{n}@example.com"))
                .await;
            self.app.subscribe_free(&user).await;
            users.push(user);
        }
        users
    }

    /// One call to `tool` from Ada, then from each of `others` more subscribed users; their answers.
    async fn one_call_each(&self, tool: &str, others: usize) -> Vec<serde_json::Value> {
        let others = self.subscribed_users(others).await;
        let mut answers = Vec::with_capacity(others.len() + 1);
        for caller in std::iter::once(&self.user).chain(&others) {
            answers.push(
                self.app
                    .invoke(&caller.access_token, tool, json!({}), None)
                    .await,
            );
        }
        answers
    }

    async fn used(&self) -> i64 {
        self.app
            .sql_number(&format!(
                "SELECT tokens_used AS n FROM subscriptions WHERE user_id = '{}'",
                self.user.id
            ))
            .await
    }
}

#[tokio::test]
async fn a_call_returns_the_upstream_answer_and_meters_its_token_count() {
    let s = setup().await;
    let tool = s.tool("/ok", json!({})).await;
    s.app.subscribe_free(&s.user).await;

    let body = s
        .app
        .invoke(&s.user.access_token, &tool, json!({ "messages": [] }), None)
        .await;

    let invocation = &body["data"]["invokeTool"];
    assert_eq!(invocation["status"], "SUCCESS", "{body}");
    assert_eq!(invocation["tokensUsed"], 42);
    assert_eq!(invocation["tokensEstimated"], false);
    assert_eq!(
        invocation["output"]["choices"][0]["message"]["content"],
        "done"
    );
    assert!(invocation["latencyMs"].as_i64().unwrap() >= 0);
    assert_eq!(s.used().await, 42);
    assert_eq!(
        s.usage_rows("status = 'SUCCESS' AND tokens_used = 42 AND api_key_id IS NULL")
            .await,
        1
    );
    assert_eq!(s.app.tokens_reserved_once_idle().await, 0);
}

#[tokio::test]
async fn the_token_count_comes_from_the_configured_path_or_a_flagged_estimate() {
    let s = setup().await;
    let custom = s
        .tool("/custom", json!({ "tokensPath": "meta.tokens.count" }))
        .await;
    let none = s.tool("/no-usage", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    let input = json!({ "text": "x".repeat(100) });

    let from_path = s
        .app
        .invoke(&s.user.access_token, &custom, input.clone(), None)
        .await;
    let estimated = s
        .app
        .invoke(&s.user.access_token, &none, input.clone(), None)
        .await;

    assert_eq!(from_path["data"]["invokeTool"]["tokensUsed"], 7);
    assert_eq!(estimated["data"]["invokeTool"]["tokensEstimated"], true);
    let expected = (input.to_string().len()
        + json!({ "text": "an answer without a token count" })
            .to_string()
            .len())
    .div_ceil(4);
    assert_eq!(
        estimated["data"]["invokeTool"]["tokensUsed"],
        expected as i64
    );
    assert_eq!(s.usage_rows("tokens_estimated").await, 1);
}

#[tokio::test]
async fn tier_and_subscription_denials_come_in_order_and_are_logged() {
    let s = setup().await;
    let pro_tool = s.tool("/ok", json!({ "minTier": "PRO" })).await;
    let free_tool = s.tool("/ok", json!({})).await;

    let no_plan_pro = s
        .app
        .invoke(&s.user.access_token, &pro_tool, json!({}), None)
        .await;
    let no_plan_free = s
        .app
        .invoke(&s.user.access_token, &free_tool, json!({}), None)
        .await;
    s.app.subscribe_free(&s.user).await;
    let free_plan_pro = s
        .app
        .invoke(&s.user.access_token, &pro_tool, json!({}), None)
        .await;
    let unknown = s
        .app
        .invoke(
            &s.user.access_token,
            &uuid::Uuid::new_v4().to_string(),
            json!({}),
            None,
        )
        .await;
    let anonymous = s
        .app
        .graphql_with(
            "mutation($t: ID!) { invokeTool(toolId: $t, input: {}) { id } }",
            json!({ "t": free_tool }),
        )
        .await;

    assert_eq!(error_code(&no_plan_pro), "PLAN_REQUIRED");
    assert_eq!(error_code(&no_plan_free), "SUBSCRIPTION_REQUIRED");
    assert_eq!(error_code(&free_plan_pro), "PLAN_REQUIRED");
    assert_eq!(error_code(&unknown), "NOT_FOUND");
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert_eq!(s.usage_rows("error_code = 'PLAN_REQUIRED'").await, 2);
    assert_eq!(
        s.usage_rows("error_code = 'SUBSCRIPTION_REQUIRED'").await,
        1
    );
    assert_eq!(s.upstream.calls(), 0);
}

#[tokio::test]
async fn a_disabled_tool_cannot_be_invoked_and_changes_apply_to_the_next_call() {
    let s = setup().await;
    let tool = s.tool("/ok", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    let update = "mutation($id: ID!, $i: ToolInput!) { updateTool(id: $id, input: $i) { id } }";

    s.app
        .graphql_as(
            &s.admin.access_token,
            update,
            json!({ "id": tool, "i": { "enabled": false } }),
        )
        .await;
    let disabled = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    s.app
        .graphql_as(&s.admin.access_token, update, json!({ "id": tool, "i": { "enabled": true, "endpoint": s.upstream.url("/custom"), "tokensPath": "meta.tokens.count" } }))
        .await;
    let moved = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(error_code(&disabled), "NOT_FOUND");
    assert_eq!(moved["data"]["invokeTool"]["tokensUsed"], 7);
}

#[tokio::test]
async fn an_exhausted_quota_refuses_before_calling_the_upstream() {
    let s = setup().await;
    let tool = s.tool("/ok", json!({ "estimatedTokens": 60 })).await;
    s.app.subscribe_free(&s.user).await;
    s.app
        .sql("UPDATE plans SET token_limit = 100 WHERE tier = 'FREE'")
        .await;

    let first = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    let second = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(first["data"]["invokeTool"]["tokensUsed"], 42);
    assert_eq!(error_code(&second), "QUOTA_EXCEEDED");
    assert_eq!(s.upstream.calls(), 1);
    assert_eq!(s.usage_rows("error_code = 'QUOTA_EXCEEDED'").await, 1);
}

/// The `gateway_circuit_open` value `/metrics` shows for a tool, by its slug.
async fn circuit_gauge(s: &Setup, tool: &str) -> Option<String> {
    let slug = s
        .app
        .sql_text(&format!("SELECT slug AS t FROM tools WHERE id = '{tool}'"))
        .await;
    let text = s.app.get("/metrics").await.text().await.ok()?;
    let prefix = format!("gateway_circuit_open{{tool=\"{slug}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
}

#[tokio::test]
async fn a_failing_upstream_opens_the_circuit_which_recovers_after_a_successful_probe() {
    let s = setup().await;
    let tool = s.tool("/flaky", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    s.upstream.fail_next(1000);

    // Failures count once per caller: three callers fail.
    for failed in s.one_call_each(&tool, 2).await {
        assert_eq!(error_code(&failed), "UPSTREAM_UNAVAILABLE");
    }
    let calls_when_open = s.upstream.calls();
    assert_eq!(
        calls_when_open, 9,
        "three attempts per call (retries on 503)"
    );
    let refused = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    assert_eq!(error_code(&refused), "UPSTREAM_UNAVAILABLE");
    assert!(error_message(&refused).contains("paused"));
    assert_eq!(
        s.upstream.calls(),
        calls_when_open,
        "an open circuit does not call"
    );
    assert_eq!(circuit_gauge(&s, &tool).await.as_deref(), Some("1"));

    s.upstream.fail_next(0);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let probe = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    let after = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(probe["data"]["invokeTool"]["status"], "SUCCESS", "{probe}");
    assert_eq!(after["data"]["invokeTool"]["status"], "SUCCESS");
    assert_eq!(circuit_gauge(&s, &tool).await.as_deref(), Some("0"));
    assert_eq!(s.used().await, 84);
    assert_eq!(
        s.usage_rows("error_code = 'UPSTREAM_UNAVAILABLE' AND tokens_used = 0")
            .await,
        4
    );
    assert_eq!(s.app.tokens_reserved_once_idle().await, 0);
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_then_succeeds() {
    let s = setup().await;
    let tool = s.tool("/flaky", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    s.upstream.fail_next(2);

    let body = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(body["data"]["invokeTool"]["status"], "SUCCESS", "{body}");
    assert_eq!(s.upstream.calls(), 3);
    assert_eq!(
        s.usage_rows("true").await,
        1,
        "one invocation, one usage row"
    );
}

#[tokio::test]
async fn a_slow_upstream_times_out_and_releases_the_reservation() {
    let s = setup().await;
    let tool = s.tool("/slow", json!({ "timeoutMs": 300 })).await;
    let rejecting = s.tool("/bad-request", json!({})).await;
    let failing = s.tool("/fail", json!({})).await;
    s.app.subscribe_free(&s.user).await;

    let started = std::time::Instant::now();
    let body = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    let elapsed = started.elapsed();
    let rejected = s
        .app
        .invoke(&s.user.access_token, &rejecting, json!({}), None)
        .await;
    let failed = s
        .app
        .invoke(&s.user.access_token, &failing, json!({}), None)
        .await;

    assert_eq!(error_code(&body), "UPSTREAM_TIMEOUT");
    assert!(
        elapsed < Duration::from_millis(1900),
        "cut at the 300 ms timeout, not the 2 s answer: {elapsed:?}"
    );
    assert_eq!(error_code(&rejected), "BAD_USER_INPUT");
    assert_eq!(error_code(&failed), "UPSTREAM_UNAVAILABLE");
    assert_eq!(
        s.usage_rows("error_code = 'UPSTREAM_TIMEOUT' AND tokens_used = 0")
            .await,
        1
    );
    assert_eq!(s.used().await, 0);
    assert_eq!(s.app.tokens_reserved_once_idle().await, 0);
}

#[tokio::test]
async fn a_stored_endpoint_that_is_not_a_url_is_refused_without_a_call_and_metered() {
    let s = setup().await;
    let tool = s.tool("/echo", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    // Tool input refuses such an endpoint (the table only asks for the scheme), so only a row changed
    // in the database can hold one.
    s.app
        .sql(&format!(
            "UPDATE tools SET endpoint = 'http://[unclosed/v1' WHERE id = '{tool}'"
        ))
        .await;
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let body = s
            .app
            .invoke(&s.user.access_token, &tool, json!({}), None)
            .await;
        if body["errors"].is_array() || std::time::Instant::now() > until {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let calls_before = s.upstream.calls();
    let again = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(error_code(&refused), "UPSTREAM_UNAVAILABLE", "{refused}");
    assert_eq!(error_code(&again), "UPSTREAM_UNAVAILABLE", "{again}");
    assert!(!error_message(&again).contains("unclosed"), "{again}");
    assert_eq!(s.upstream.calls(), calls_before, "nothing is called");
    assert!(
        s.usage_rows("error_code = 'UPSTREAM_UNAVAILABLE' AND tokens_used = 0")
            .await
            >= 2
    );
    assert_eq!(s.app.tokens_reserved_once_idle().await, 0);
}

#[tokio::test]
async fn the_same_idempotency_key_replays_the_first_answer_without_calling_or_charging_again() {
    let s = setup().await;
    let tool = s.tool("/ok", json!({})).await;
    s.app.subscribe_free(&s.user).await;

    let first = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), Some("order-42"))
        .await;
    let repeat = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), Some("order-42"))
        .await;
    let other = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), Some("order-43"))
        .await;
    let other_user = s.app.register("Bob", "bob@example.com").await;
    s.app.subscribe_free(&other_user).await;
    let same_key_other_user = s
        .app
        .invoke(&other_user.access_token, &tool, json!({}), Some("order-42"))
        .await;

    assert_eq!(first["data"]["invokeTool"]["replayed"], false);
    assert_eq!(repeat["data"]["invokeTool"]["replayed"], true);
    assert_eq!(
        repeat["data"]["invokeTool"]["id"],
        first["data"]["invokeTool"]["id"]
    );
    assert_eq!(
        repeat["data"]["invokeTool"]["output"],
        first["data"]["invokeTool"]["output"]
    );
    assert_ne!(
        other["data"]["invokeTool"]["id"],
        first["data"]["invokeTool"]["id"]
    );
    assert_eq!(same_key_other_user["data"]["invokeTool"]["replayed"], false);
    assert_eq!(s.upstream.calls(), 3);
    assert_eq!(s.used().await, 84, "the repeat was not charged");
}

#[tokio::test]
async fn an_api_key_invocation_is_attributed_to_the_key() {
    let s = setup().await;
    let tool = s.tool("/ok", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    let created = s
        .app
        .graphql_as(
            &s.user.access_token,
            "mutation { createApiKey(input: {name: \"script\"}) { key apiKey { id } } }",
            json!({}),
        )
        .await;
    let key = created["data"]["createApiKey"]["key"].as_str().unwrap();
    let key_id = created["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap();

    let body = s.app.invoke(key, &tool, json!({}), None).await;
    s.app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    let usage = "query($k: ID) { usage(apiKeyId: $k) { totalCount edges { node { apiKeyId } } } }";
    let by_key = s
        .app
        .graphql_as(&s.user.access_token, usage, json!({ "k": key_id }))
        .await;
    let all = s
        .app
        .graphql_as(&s.user.access_token, usage, json!({}))
        .await;

    assert_eq!(body["data"]["invokeTool"]["status"], "SUCCESS");
    assert_eq!(s.usage_rows(&format!("api_key_id = '{key_id}'")).await, 1);
    assert_eq!(by_key["data"]["usage"]["totalCount"], 1, "{by_key}");
    assert_eq!(
        by_key["data"]["usage"]["edges"][0]["node"]["apiKeyId"],
        key_id
    );
    assert_eq!(all["data"]["usage"]["totalCount"], 2);
    let sources: Vec<&Value> = all["data"]["usage"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"]["apiKeyId"])
        .collect();
    assert!(sources.contains(&&Value::Null), "a session call has no key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_invocations_never_pass_a_small_limit_and_all_are_logged() {
    let s = setup().await;
    let tool = s.tool("/ten", json!({ "estimatedTokens": 10 })).await;
    s.app.subscribe_free(&s.user).await;
    s.app
        .sql("UPDATE plans SET token_limit = 100 WHERE tier = 'FREE'")
        .await;
    let app = std::sync::Arc::new(s.app);

    let calls: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            let token = s.user.access_token.clone();
            let tool = tool.clone();
            tokio::spawn(async move { app.invoke(&token, &tool, json!({}), None).await })
        })
        .collect();
    let mut succeeded = 0;
    let mut refused = 0;
    for call in calls {
        let body = call.await.unwrap();
        if body["data"]["invokeTool"]["status"] == "SUCCESS" {
            succeeded += 1;
        } else {
            assert_eq!(error_code(&body), "QUOTA_EXCEEDED", "{body}");
            refused += 1;
        }
    }

    assert_eq!(succeeded, 10);
    assert_eq!(refused, 40);
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        50
    );
    assert_eq!(
        app.sql_number("SELECT tokens_used AS n FROM subscriptions")
            .await,
        100
    );
    assert_eq!(app.tokens_reserved_once_idle().await, 0);
    assert_eq!(s.upstream.calls(), 10);
    // Concurrent calls are metered in shared transactions; the rollups still add up to the log.
    app.rolled_up().await;
    for (query, expected) in [
        ("SELECT sum(invocations)::bigint AS n FROM usage_daily", 50),
        ("SELECT sum(tokens)::bigint AS n FROM usage_daily", 100),
        ("SELECT sum(errors)::bigint AS n FROM usage_daily", 40),
        (
            "SELECT sum(latency_ms_sum)::bigint - (SELECT sum(latency_ms) FROM usage_events) AS n FROM usage_daily",
            0,
        ),
        ("SELECT count(*) AS n FROM user_activity", 1),
    ] {
        assert_eq!(app.sql_number(query).await, expected, "{query}");
    }
    // The day folded into its month: the monthly rollup adds up to the log too.
    let two_days_later = app.clock_now() + chrono::Duration::days(2);
    joyfull_hub::usage::service::fold_closed_days(&app.state, two_days_later)
        .await
        .expect("the fold");
    for table in ["platform_daily", "platform_monthly"] {
        for (sum, expected) in [
            (
                format!("SELECT sum(invocations)::bigint AS n FROM {table}"),
                50,
            ),
            (format!("SELECT sum(errors)::bigint AS n FROM {table}"), 40),
            (format!("SELECT sum(tokens)::bigint AS n FROM {table}"), 100),
            (
                format!("SELECT sum(h)::bigint AS n FROM {table}, unnest(latency_hist) AS h"),
                50,
            ),
        ] {
            assert_eq!(app.sql_number(&sum).await, expected, "{sum}");
        }
    }
}

#[tokio::test]
async fn the_demo_tools_answer_through_the_built_in_mock_upstream() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&user).await;
    joyfull_hub::dev::demo::seed(&app.state, app.address)
        .await
        .unwrap();
    joyfull_hub::dev::demo::seed(&app.state, app.address)
        .await
        .unwrap(); // idempotent
    let tools = app
        .graphql("{ tools(search: \"demo\") { totalCount nodes { id name } } }")
        .await;
    assert_eq!(tools["data"]["tools"]["totalCount"], 2);
    let echo = tools["data"]["tools"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Demo Echo")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let body = app
        .invoke(
            &user.access_token,
            &echo,
            json!({ "messages": [{ "role": "user", "content": "Hello there friend" }] }),
            None,
        )
        .await;

    let invocation = &body["data"]["invokeTool"];
    assert_eq!(
        invocation["output"]["choices"][0]["message"]["content"], "Hello there friend",
        "{body}"
    );
    assert_eq!(invocation["tokensUsed"], 6, "3 prompt + 3 completion words");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_call_still_gets_its_call_metered() {
    let s = setup().await;
    let tool = s.tool("/slow", json!({ "timeoutMs": 5000 })).await;
    s.app.subscribe_free(&s.user).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let gave_up = impatient
        .post(s.app.url("/graphql"))
        .bearer_auth(&s.user.access_token)
        .json(&json!({ "query": format!("mutation {{ invokeTool(toolId: \"{tool}\", input: {{}}) {{ id }} }}") }))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.usage_rows("status = 'SUCCESS'").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was never metered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.used().await, 1);
    assert_eq!(s.app.tokens_reserved_once_idle().await, 0);
}

#[tokio::test]
async fn a_failing_metering_batch_is_retried_one_by_one_and_loses_no_other_settlement() {
    use joyfull_hub::gateway::meter::Settlement;
    use joyfull_hub::usage::model::UsageEvent;

    let s = setup().await;
    let tool: uuid::Uuid = s.tool("/ok", json!({})).await.parse().unwrap();
    let user: uuid::Uuid = s.user.id.parse().unwrap();
    let settlement = |tool_id: uuid::Uuid| Settlement {
        event: UsageEvent {
            id: uuid::Uuid::now_v7(),
            user_id: user,
            api_key_id: None,
            tool_id,
            subscription_id: None,
            tokens_used: 0,
            tokens_estimated: false,
            status: joyfull_hub::usage::model::InvocationStatus::Error,
            error_code: Some("SUBSCRIPTION_REQUIRED".into()),
            latency_ms: 1,
            created_at: s.app.clock_now(),
            tokens_overrun: 0,
        },
        tier: None,
        reservation: None,
        limited_key: None,
        key: None,
    };
    let meter = &s.app.state.meter;

    // Queued in one poll, so the writer takes them as one batch; the unknown tool breaks that batch.
    let (a, b, broken, c, d) = tokio::join!(
        meter.write(settlement(tool)),
        meter.write(settlement(tool)),
        meter.write(settlement(uuid::Uuid::new_v4())),
        meter.write(settlement(tool)),
        meter.write(settlement(tool)),
    );

    assert!(broken.is_err());
    for written in [a, b, c, d] {
        written.unwrap();
    }
    assert_eq!(s.usage_rows("true").await, 4);
    s.app.rolled_up().await;
    assert_eq!(
        s.app
            .sql_number("SELECT sum(invocations)::bigint AS n FROM usage_daily")
            .await,
        4
    );
}

#[tokio::test]
async fn a_token_count_out_of_range_is_ignored_the_estimate_is_charged_and_the_call_is_metered() {
    let s = setup().await;
    let overflow = s.tool("/overflow", json!({})).await;
    let negative = s.tool("/negative", json!({})).await;
    s.app.subscribe_free(&s.user).await;

    let huge = s
        .app
        .invoke(&s.user.access_token, &overflow, json!({}), None)
        .await;
    let below_zero = s
        .app
        .invoke(&s.user.access_token, &negative, json!({}), None)
        .await;

    for body in [&huge, &below_zero] {
        let call = &body["data"]["invokeTool"];
        assert_eq!(call["tokensEstimated"], true, "{body}");
        let tokens = call["tokensUsed"].as_i64().unwrap();
        assert!((1..1_000).contains(&tokens), "{body}");
    }
    assert_eq!(s.usage_rows("tokens_estimated").await, 2);
    assert_eq!(
        s.used().await,
        huge["data"]["invokeTool"]["tokensUsed"].as_i64().unwrap()
            + below_zero["data"]["invokeTool"]["tokensUsed"]
                .as_i64()
                .unwrap()
    );
}

#[tokio::test]
async fn metrics_show_each_tools_upstream_latency_and_outcomes_and_refusals_by_code() {
    let s = setup().await;
    let tool = s.tool("/ok", json!({})).await;
    let refused = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    s.app.subscribe_free(&s.user).await;
    s.app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;
    let slug = s
        .app
        .sql_text(&format!("SELECT slug AS t FROM tools WHERE id = '{tool}'"))
        .await;

    let text = s.app.get("/metrics").await.text().await.unwrap();

    assert_eq!(error_code(&refused), "SUBSCRIPTION_REQUIRED");
    let has = |prefix: &str, parts: &[&str]| {
        text.lines()
            .any(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
    };
    let tool_label = format!("tool=\"{slug}\"");
    assert!(
        has("gateway_upstream_duration_seconds_bucket", &[&tool_label]),
        "{text}"
    );
    assert!(
        has(
            "gateway_upstream_calls_total",
            &[&tool_label, "outcome=\"ok\""]
        ),
        "{text}"
    );
    assert!(
        has(
            "gateway_refusals_total",
            &["code=\"SUBSCRIPTION_REQUIRED\""]
        ),
        "{text}"
    );
}

#[tokio::test]
async fn one_callers_failures_never_open_the_circuit_for_everyone() {
    let s = setup().await;
    let tool = s.tool("/flaky", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    let other = s.subscribed_users(1).await.remove(0);
    s.upstream.fail_next(30);

    for _ in 0..10 {
        let failed = s
            .app
            .invoke(&s.user.access_token, &tool, json!({}), None)
            .await;
        assert_eq!(error_code(&failed), "UPSTREAM_UNAVAILABLE", "{failed}");
    }
    s.upstream.fail_next(0);
    let served = s
        .app
        .invoke(&other.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(
        served["data"]["invokeTool"]["status"], "SUCCESS",
        "{served}"
    );
    assert_eq!(
        circuit_gauge(&s, &tool).await,
        None,
        "the circuit never opened"
    );
}

#[tokio::test]
async fn an_upstreams_429_tells_the_caller_to_slow_down_and_leaves_the_circuit_closed() {
    let s = setup().await;
    let tool = s.tool("/throttled", json!({})).await;
    s.app.subscribe_free(&s.user).await;
    s.upstream.fail_next(4);

    for slowed in s.one_call_each(&tool, 3).await {
        assert_eq!(error_code(&slowed), "RATE_LIMITED", "{slowed}");
        assert_eq!(
            slowed["errors"][0]["extensions"]["retryAfter"], 7,
            "{slowed}"
        );
    }
    let calls = s.upstream.calls();
    let served = s
        .app
        .invoke(&s.user.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(calls, 4, "a 429 is not retried");
    assert_eq!(
        served["data"]["invokeTool"]["status"], "SUCCESS",
        "{served}"
    );
    assert_eq!(
        circuit_gauge(&s, &tool).await,
        None,
        "the circuit never opened"
    );
}
