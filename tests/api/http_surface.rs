use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, error_message};

#[tokio::test]
async fn a_query_over_post_answers_with_data() {
    let app = TestApp::spawn().await;

    let body = app
        .graphql("{ __typename serverInfo { version time } }")
        .await;

    assert_eq!(body["data"]["__typename"], "Query");
    assert_eq!(
        body["data"]["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(body.get("errors").is_none(), "{body}");
}

#[tokio::test]
async fn every_response_carries_a_generated_request_id() {
    let app = TestApp::spawn().await;

    let graphql = app
        .post_graphql(&json!({ "query": "{ __typename }" }))
        .await;
    let missing = app.get("/no-such-page").await;

    for response in [graphql, missing] {
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
}

#[tokio::test]
async fn a_sensible_client_request_id_is_echoed_and_a_hostile_one_replaced() {
    let app = TestApp::spawn().await;

    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-trace-42")
        .send()
        .await
        .unwrap();
    let replaced = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();

    assert_eq!(echoed.headers()["x-request-id"], "client-trace-42");
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn an_unknown_route_is_a_404_with_a_graphql_error() {
    let app = TestApp::spawn().await;

    let response = app.get("/api/v1/nothing").await;

    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "NOT_FOUND");
    assert!(error_message(&body).contains("/api/v1/nothing"));
}

#[tokio::test]
async fn a_malformed_json_body_is_a_graphql_error_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(r#"{"query": "{ __typename }""#)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(error_message(&body).contains("not a valid GraphQL request"));
    assert_eq!(
        app.graphql("{ __typename }").await["data"]["__typename"],
        "Query"
    );
}

#[tokio::test]
async fn a_body_without_a_query_and_a_non_json_body_are_refused_clearly() {
    let app = TestApp::spawn().await;

    let no_query = app.post_graphql(&json!({ "variables": {} })).await;
    let form = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=%7B__typename%7D")
        .send()
        .await
        .unwrap();

    assert_eq!(no_query.status(), 400);
    let body: Value = no_query.json().await.unwrap();
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(form.status(), 415);
}

#[tokio::test]
async fn syntax_and_validation_errors_carry_bad_user_input() {
    let app = TestApp::spawn().await;

    let syntax = app.graphql("{ __typename ").await;
    let unknown_field = app.graphql("{ noSuchField }").await;

    assert_eq!(error_code(&syntax), "BAD_USER_INPUT");
    assert_eq!(error_code(&unknown_field), "BAD_USER_INPUT");
    assert!(error_message(&unknown_field).contains("noSuchField"));
}

#[tokio::test]
async fn graphql_response_json_is_used_when_asked_for_and_request_errors_are_400_then() {
    let app = TestApp::spawn().await;
    let ask = |query: &'static str| {
        app.client
            .post(app.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query }))
            .send()
    };

    let ok = ask("{ __typename }").await.unwrap();
    let invalid = ask("{ noSuchField }").await.unwrap();
    let plain = app
        .post_graphql(&json!({ "query": "{ noSuchField }" }))
        .await;

    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["content-type"],
        "application/graphql-response+json"
    );
    assert_eq!(invalid.status(), 400);
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn a_get_request_may_run_a_query() {
    let app = TestApp::spawn().await;

    let response = app.get("/graphql?query=%7B%20__typename%20%7D").await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["__typename"], "Query");
}

#[tokio::test]
async fn a_get_request_may_not_run_a_mutation() {
    let app = TestApp::spawn().await;

    let response = app
        .get("/graphql?query=mutation%20%7B%20__typename%20%7D")
        .await;

    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_browser_gets_graphiql_and_the_playground() {
    let app = TestApp::spawn().await;

    let graphiql = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    let playground = app.get("/playground").await;

    assert_eq!(graphiql.status(), 200);
    let html = graphiql.text().await.unwrap();
    assert!(html.to_lowercase().contains("graphiql"));
    assert!(html.contains("/graphql/ws"));
    assert_eq!(playground.status(), 200);
    assert!(
        playground
            .text()
            .await
            .unwrap()
            .contains("GraphQLPlayground")
    );
}

#[tokio::test]
async fn responses_are_gzip_compressed_when_the_client_accepts_it() {
    let app = TestApp::spawn().await;
    let query = json!({ "query": "{ __schema { types { name description } } }" });

    let response = app
        .client
        .post(app.url("/graphql"))
        .header("accept-encoding", "gzip")
        .json(&query)
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body["data"]["__schema"]["types"].as_array().unwrap().len() > 5);
    assert!(compressed.len() < text.len());
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::spawn_with(|c| {
        c.cors_origins = Some(joyfull_hub::config::CorsOrigins::List(vec![
            "https://dashboard.example".into(),
        ]))
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };

    let allowed = preflight("https://dashboard.example").await.unwrap();
    let refused = preflight("https://evil.example").await.unwrap();

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://dashboard.example"
    );
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let big = json!({ "query": format!("{{ __typename }} # {}", "x".repeat(8000)) });

    let response = app.post_graphql(&big).await;

    assert_eq!(response.status(), 413);
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn a_request_past_its_deadline_is_stopped_with_a_retryable_error() {
    // A password hash of several seconds makes a registration outlive a deadline of one.
    let app = TestApp::spawn_with(|config| {
        config.request_timeout = Duration::from_secs(1);
        config.auth.argon2_memory_kib = 64 * 1024;
        config.auth.argon2_iterations = 60;
    })
    .await;

    let started = std::time::Instant::now();
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": "mutation { register(input: {name: \"Slow\", email: \"slow@example.com\", password: \"Corr3ct-Horse-Battery!\"}) { accessToken } }" }))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE", "{body}");
    assert!(waited < Duration::from_millis(1900), "{waited:?}");
}

/// An invocation pushes its request's deadline back to its tool's own timeout: a long call finishes,
/// and a call past its tool's timeout answers its own outcome with its usage row, never a cut request.
#[tokio::test]
async fn a_tool_call_allowed_to_run_longer_than_the_request_deadline_ends_with_its_own_outcome() {
    let app = TestApp::spawn_with(|config| config.request_timeout = Duration::from_secs(1)).await;
    let upstream = crate::helpers::upstream::Upstream::start().await;
    let catalogue = app.catalogue(upstream.url("/slow")).await;
    let patient = catalogue.tool.clone();
    app.sql(&format!(
        "UPDATE tools SET timeout_ms = 4000 WHERE id = '{patient}'"
    ))
    .await;
    let hasty = app
        .create_tool(
            &catalogue.root,
            json!({ "name": "Hasty", "endpoint": upstream.url("/slow"), "timeoutMs": 1500 }),
        )
        .await;
    let token = &catalogue.user.access_token;

    let finished = app.invoke(token, &patient, json!({}), None).await;
    let timed_out = app.invoke(token, &hasty, json!({}), None).await;

    assert_eq!(
        finished["data"]["invokeTool"]["status"], "SUCCESS",
        "{finished}"
    );
    assert_eq!(error_code(&timed_out), "UPSTREAM_TIMEOUT", "{timed_out}");
    assert_eq!(
        app.sql_number(&format!(
            "SELECT count(*) AS n FROM usage_events WHERE tool_id = '{hasty}' AND error_code = 'UPSTREAM_TIMEOUT'"
        ))
        .await,
        1,
        "the timed-out call is in the usage log"
    );
}
