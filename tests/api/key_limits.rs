//! A key's own limits: a request rate and a token budget per billing period, set by its owner, applied
//! with the plan's (so they only narrow it), shown by `apiKeys` with what the key used this period.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::upstream::Upstream;
use crate::helpers::{Catalogue, TestApp, TestUser, error_code, error_message};

const KEY_FIELDS: &str = "id requestsPerMinute tokenBudget tokensUsedThisPeriod";

/// A key of `user` with the given limits (JSON null for none); its secret and id.
async fn key_with(app: &TestApp, user: &TestUser, rate: Value, budget: Value) -> (String, String) {
    let body = app
        .graphql_as(
            &user.access_token,
            "mutation($r: Int, $b: BigInt) { createApiKey(input: {name: \"script\", requestsPerMinute: $r, tokenBudget: $b}) { key apiKey { id } } }",
            json!({ "r": rate, "b": budget }),
        )
        .await;
    let created = &body["data"]["createApiKey"];
    (
        created["key"].as_str().expect("a key").to_owned(),
        created["apiKey"]["id"].as_str().expect("an id").to_owned(),
    )
}

async fn listed(app: &TestApp, user: &TestUser, id: &str) -> Value {
    let body = app
        .graphql_as(
            &user.access_token,
            &format!("{{ apiKeys {{ {KEY_FIELDS} }} }}"),
            json!({}),
        )
        .await;
    body["data"]["apiKeys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .expect("the key is listed")
}

fn status(answer: &Value) -> &str {
    answer["data"]["invokeTool"]["status"]
        .as_str()
        .unwrap_or_else(|| error_code(answer))
}

#[tokio::test]
async fn a_keys_rate_narrows_the_plans_and_leaves_the_owners_other_credentials_alone() {
    let app = TestApp::spawn_with(|config| config.gateway.enforce_request_rates = true).await;
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = app.catalogue(upstream.url("/ten")).await;
    // The Free plan: 10 a minute (a burst of 2). The key: 6 a minute (a burst of 1).
    let (key, _) = key_with(&app, &user, json!(6), Value::Null).await;

    let first = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&key)
        .json(&json!({ "query": "mutation($t: ID!) { invokeTool(toolId: $t, input: {}) { status } }", "variables": { "t": tool } }))
        .send()
        .await
        .unwrap();
    let limit_header = first.headers()["x-ratelimit-limit"]
        .to_str()
        .unwrap()
        .to_owned();
    let first: Value = first.json().await.unwrap();
    let second = app.invoke(&key, &tool, json!({}), None).await;
    let by_session = app.invoke(&user.access_token, &tool, json!({}), None).await;

    assert_eq!(status(&first), "SUCCESS", "{first}");
    assert_eq!(limit_header, "6", "the narrower rate is the one reported");
    assert_eq!(error_code(&second), "RATE_LIMITED", "{second}");
    assert!(
        error_message(&second).contains("API key allows 6"),
        "{second}"
    );
    let retry = second["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!((1..=10).contains(&retry), "one call every 10 s: {second}");
    assert_eq!(
        status(&by_session),
        "SUCCESS",
        "the plan still had room: {by_session}"
    );
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keys_budget_holds_under_parallel_calls_and_renews_with_the_period() {
    let app = Arc::new(TestApp::spawn().await);
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = app.catalogue(upstream.url("/ten")).await;
    app.set_estimate(&tool, 10).await;
    let (key, id) = key_with(&app, &user, Value::Null, json!(50)).await;

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (app, key, tool) = (app.clone(), key.clone(), tool.clone());
            tokio::spawn(async move { app.invoke(&key, &tool, json!({}), None).await })
        })
        .collect();
    let mut succeeded = 0;
    for call in calls {
        let answer = call.await.unwrap();
        if status(&answer) == "SUCCESS" {
            succeeded += 1;
        } else {
            assert_eq!(error_code(&answer), "QUOTA_EXCEEDED", "{answer}");
            assert!(
                error_message(&answer).contains("API key's budget of 50"),
                "{answer}"
            );
        }
    }
    let by_session = app.invoke(&user.access_token, &tool, json!({}), None).await;
    let shown = listed(&app, &user, &id).await;

    assert_eq!(succeeded, 5, "50 tokens of calls reserving 10 each");
    assert_eq!(
        status(&by_session),
        "SUCCESS",
        "the plan has tokens left: {by_session}"
    );
    assert_eq!(shown["tokenBudget"], 50, "{shown}");
    assert_eq!(shown["tokensUsedThisPeriod"], 50, "{shown}");
    assert!(shown["requestsPerMinute"].is_null());
    assert_eq!(
        app.sql_number("SELECT tokens_reserved AS n FROM api_key_spending")
            .await,
        0,
        "settled reservations leave the key"
    );

    // A new period: the key's budget is whole again.
    app.clock.advance(chrono::Duration::days(32));
    let renewed = app.invoke(&key, &tool, json!({}), None).await;
    assert_eq!(status(&renewed), "SUCCESS", "{renewed}");
    assert_eq!(listed(&app, &user, &id).await["tokensUsedThisPeriod"], 10);
}

#[tokio::test]
async fn limits_are_set_by_the_owner_only_and_checked() {
    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let eve = app.register("Eve", "eve@example.com").await;
    let (_, id) = key_with(&app, &ada, Value::Null, Value::Null).await;
    let set = |token: String, rate: Value, budget: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.graphql_as(
                &token,
                &format!("mutation($id: ID!, $r: Int, $b: BigInt) {{ setApiKeyLimits(id: $id, input: {{requestsPerMinute: $r, tokenBudget: $b}}) {{ {KEY_FIELDS} }} }}"),
                json!({ "id": id, "r": rate, "b": budget }),
            )
            .await
        }
    };

    let zero_rate = set(ada.access_token.clone(), json!(0), Value::Null).await;
    let negative_budget = set(ada.access_token.clone(), Value::Null, json!(-1)).await;
    let by_other = set(eve.access_token.clone(), json!(5), Value::Null).await;
    let fine = set(ada.access_token.clone(), json!(30), json!(1000)).await;
    let cleared = set(ada.access_token.clone(), Value::Null, Value::Null).await;

    assert_eq!(error_code(&zero_rate), "BAD_USER_INPUT");
    assert_eq!(
        zero_rate["errors"][0]["extensions"]["field"],
        "requestsPerMinute"
    );
    assert_eq!(
        negative_budget["errors"][0]["extensions"]["field"],
        "tokenBudget"
    );
    assert_eq!(error_code(&by_other), "NOT_FOUND", "{by_other}");
    assert_eq!(fine["data"]["setApiKeyLimits"]["requestsPerMinute"], 30);
    assert_eq!(fine["data"]["setApiKeyLimits"]["tokenBudget"], 1000);
    assert!(cleared["data"]["setApiKeyLimits"]["tokenBudget"].is_null());
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM audit_log WHERE action = 'api_key.limits'")
            .await,
        2
    );
}

#[tokio::test]
async fn a_key_without_limits_shows_its_spending_and_limits_set_later_count_it() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = app.catalogue(upstream.url("/ten")).await;
    app.set_estimate(&tool, 10).await;
    let (key, id) = key_with(&app, &user, Value::Null, Value::Null).await;
    for _ in 0..3 {
        let answer = app.invoke(&key, &tool, json!({}), None).await;
        assert_eq!(status(&answer), "SUCCESS", "{answer}");
    }
    let before_limits = listed(&app, &user, &id).await;

    let limited = app
        .graphql_as(
            &user.access_token,
            "mutation($id: ID!) { setApiKeyLimits(id: $id, input: {tokenBudget: 40}) { tokensUsedThisPeriod } }",
            json!({ "id": id }),
        )
        .await;
    let fourth = app.invoke(&key, &tool, json!({}), None).await;
    let fifth = app.invoke(&key, &tool, json!({}), None).await;

    assert_eq!(before_limits["tokensUsedThisPeriod"], 30, "{before_limits}");
    assert_eq!(
        limited["data"]["setApiKeyLimits"]["tokensUsedThisPeriod"], 30,
        "{limited}"
    );
    assert_eq!(status(&fourth), "SUCCESS", "30 + 10 fits 40: {fourth}");
    assert_eq!(error_code(&fifth), "QUOTA_EXCEEDED", "{fifth}");
    assert_eq!(listed(&app, &user, &id).await["tokensUsedThisPeriod"], 40);
}

/// The attack a limited key invites: lifting its own limits, or minting an unlimited key, with the
/// MANAGE scope it was given.
#[tokio::test]
async fn a_limited_key_can_neither_lift_its_limits_nor_mint_an_unlimited_key() {
    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;
    let created = app
        .graphql_as(
            &ada.access_token,
            "mutation { createApiKey(input: {name: \"ci\", scopes: [INVOKE, READ, MANAGE], tokenBudget: 100}) { key apiKey { id } } }",
            json!({}),
        )
        .await;
    let key = created["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = created["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let lifted = app
        .graphql_as(
            &key,
            "mutation($id: ID!) { setApiKeyLimits(id: $id, input: {}) { tokenBudget } }",
            json!({ "id": id }),
        )
        .await;
    let minted = app
        .graphql_as(
            &key,
            "mutation { createApiKey(input: {name: \"free\"}) { key } }",
            json!({}),
        )
        .await;

    assert_eq!(error_code(&lifted), "FORBIDDEN", "{lifted}");
    assert_eq!(error_code(&minted), "FORBIDDEN", "{minted}");
    assert_eq!(listed(&app, &ada, &id).await["tokenBudget"], 100);
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM api_keys").await,
        1,
        "nothing was minted"
    );
}

/// Every instance caches keys; a budget set on one applies on the other at once (within the moment
/// the change takes to reach it).
#[tokio::test]
async fn limits_set_on_one_instance_apply_on_another() {
    let first = TestApp::spawn().await;
    let url = first.db.url.clone();
    let second = TestApp::spawn_with(move |config| {
        config.database_url = Some(joyfull_hub::config::Secret::new(url));
    })
    .await;
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = first.catalogue(upstream.url("/ten")).await;
    first.set_estimate(&tool, 10).await;
    let (key, id) = key_with(&first, &user, Value::Null, Value::Null).await;
    // The second instance caches the key as it is: without limits.
    let cached = second.invoke(&key, &tool, json!({}), None).await;

    first
        .graphql_as(
            &user.access_token,
            "mutation($id: ID!) { setApiKeyLimits(id: $id, input: {tokenBudget: 15}) { id } }",
            json!({ "id": id }),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let over = second.invoke(&key, &tool, json!({}), None).await;

    assert_eq!(status(&cached), "SUCCESS", "{cached}");
    assert_eq!(
        error_code(&over),
        "QUOTA_EXCEEDED",
        "10 used and 10 more pass the budget of 15: {over}"
    );
}
