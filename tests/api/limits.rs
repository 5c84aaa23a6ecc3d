use serde_json::json;

use crate::helpers::{TestApp, error_code};

#[tokio::test]
async fn a_query_nested_deeper_than_the_limit_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_depth = 5).await;
    let deep = "{ __schema { types { fields { type { ofType { ofType { name } } } } } } }";

    let body = app.graphql(deep).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit 5")
    );
    assert!(body["data"].is_null());
}

#[tokio::test]
async fn a_query_within_the_depth_limit_runs() {
    let app = TestApp::spawn_with(|c| c.graphql.max_depth = 5).await;

    let body = app.graphql("{ __schema { queryType { name } } }").await;

    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn a_query_more_complex_than_the_limit_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_complexity = 10).await;
    let fields: String = (0..12)
        .map(|i| format!("f{i}: serverInfo {{ version }} "))
        .collect();

    let body = app.graphql(&format!("{{ {fields} }}")).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex")
    );
}

#[tokio::test]
async fn too_many_aliases_are_refused_even_inside_fragments() {
    let app = TestApp::spawn_with(|c| c.graphql.max_aliases = 3).await;
    let query = "query { ...F } fragment F on Query { a: __typename b: __typename c: __typename d: __typename }";

    let body = app.graphql(query).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("4 aliases")
    );
}

#[tokio::test]
async fn an_oversized_query_text_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_query_bytes = 256).await;
    let query = format!("{{ __typename }} # {}", "x".repeat(300));

    let body = app.graphql(&query).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
}

#[tokio::test]
async fn a_batch_runs_each_request_and_an_oversized_batch_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_batch = 3).await;
    let one = json!({ "query": "{ __typename }" });

    let ok: serde_json::Value = app
        .post_graphql(&json!([one, one]))
        .await
        .json()
        .await
        .unwrap();
    let too_big = app.post_graphql(&json!([one, one, one, one])).await;

    assert_eq!(ok.as_array().unwrap().len(), 2);
    assert_eq!(ok[1]["data"]["__typename"], "Query");
    assert_eq!(too_big.status(), 400);
    let body: serde_json::Value = too_big.json().await.unwrap();
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
}

#[tokio::test]
async fn introspection_is_off_when_configured_off() {
    let app = TestApp::spawn_with(|c| c.introspection = false).await;

    let body = app.graphql("{ __schema { queryType { name } } }").await;
    let graphiql = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let playground = app.get("/playground").await;

    assert_eq!(error_code(&body), "FORBIDDEN");
    assert!(body["data"].is_null());
    assert_eq!(
        app.graphql("{ __typename }").await["data"]["__typename"],
        "Query"
    );
    assert_eq!(graphiql.status(), 400);
    assert_eq!(playground.status(), 404);
}
