//! Where tool calls may go: without private upstreams (the production default) an endpoint must be a
//! public address, checked on the address actually connected to; redirects are never followed. Every
//! target here is on this machine: the rule is checked on the address before any connection.

use serde_json::json;

use crate::helpers::upstream::Upstream;
use crate::helpers::{TestApp, error_code};

const CREATE: &str = "mutation($i: ToolInput!) { createTool(input: $i) { id } }";

#[tokio::test]
async fn without_private_upstreams_no_call_reaches_loopback_by_literal_or_by_name() {
    let app = TestApp::spawn_with(|c| c.gateway.allow_private_upstreams = false).await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&user).await;
    let literal = upstream.url("/ok");
    let port = literal
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/ok");
    let by_name = format!("http://localhost:{port}/ok");

    let refused = app
        .graphql_as(
            &admin.access_token,
            CREATE,
            json!({ "i": { "name": "Literal", "endpoint": literal } }),
        )
        .await;
    let metadata = app
        .graphql_as(
            &admin.access_token,
            CREATE,
            json!({ "i": { "name": "Metadata", "endpoint": "http://169.254.169.254/latest/meta-data" } }),
        )
        .await;
    let named = app
        .create_tool(&admin, json!({ "name": "Named", "endpoint": by_name }))
        .await;
    let through_name = app
        .invoke(&user.access_token, &named, json!({}), None)
        .await;
    // A literal stored before the rule applied (seeded directly) is refused when called.
    let stored = joyfull_hub::tools::model::NewTool {
        id: uuid::Uuid::now_v7(),
        slug: "stored-literal".into(),
        name: "Stored literal".into(),
        description: String::new(),
        usage_notes: String::new(),
        category: "test".into(),
        endpoint: literal.clone(),
        method: "POST".into(),
        headers: json!([]),
        timeout_ms: 1000,
        tokens_path: String::new(),
        estimated_tokens: 1,
        max_tokens_per_call: joyfull_hub::tools::service::DEFAULT_MAX_TOKENS_PER_CALL,
        min_tier: joyfull_hub::billing::model::PlanTier::Free,
        enabled: true,
        streams: false,
    };
    joyfull_hub::tools::service::seed(&app.state, &stored)
        .await
        .unwrap();
    let through_literal = app
        .invoke(&user.access_token, &stored.id.to_string(), json!({}), None)
        .await;

    assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["field"], "endpoint");
    assert_eq!(error_code(&metadata), "BAD_USER_INPUT", "{metadata}");
    assert_eq!(
        error_code(&through_name),
        "UPSTREAM_UNAVAILABLE",
        "{through_name}"
    );
    assert_eq!(
        error_code(&through_literal),
        "UPSTREAM_UNAVAILABLE",
        "{through_literal}"
    );
    assert_eq!(upstream.calls(), 0, "nothing reached the loopback upstream");
}

#[tokio::test]
async fn an_upstream_redirect_is_an_upstream_error_and_is_not_followed() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    app.subscribe_free(&user).await;
    let tool = app
        .create_tool(
            &admin,
            json!({
                "name": "Redirecting",
                "endpoint": upstream.url("/redirect"),
                "headers": [{ "name": "x-api-key", "value": "provider-secret", "secret": true }]
            }),
        )
        .await;

    let body = app.invoke(&user.access_token, &tool, json!({}), None).await;

    assert_eq!(error_code(&body), "UPSTREAM_UNAVAILABLE", "{body}");
    assert_eq!(upstream.calls(), 1, "the redirect target was never asked");
}
