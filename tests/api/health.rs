use crate::helpers::TestApp;

#[tokio::test]
async fn health_answers_without_touching_the_database() {
    let app = TestApp::spawn().await;
    app.db.drop_now().await;

    let response = app.get("/health").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_is_200_while_the_database_answers() {
    let app = TestApp::spawn().await;

    let response = app.get("/ready").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["database"], "up");
}

#[tokio::test]
async fn ready_fails_with_503_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/ready").await.status(), 200);

    app.db.drop_now().await;
    let response = app.get("/ready").await;

    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["database"], "down");
}

#[tokio::test]
async fn metrics_count_graphql_operations_and_show_latency_and_the_pool() {
    let app = TestApp::spawn().await;
    app.post_graphql(&serde_json::json!({
        "query": "query MetricsProbe { __typename }",
        "operationName": "MetricsProbe"
    }))
    .await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("graphql_requests_total")
            && l.contains("operation=\"MetricsProbe\"")
            && l.contains("status=\"OK\"")),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("db_pool_connections{state=\"idle\"}"),
        "{text}"
    );
    assert!(text.contains("db_pool_max_connections 4"), "{text}");
}

#[tokio::test]
async fn with_a_metrics_token_a_scrape_must_carry_it_and_production_without_one_serves_nothing() {
    let token = "scrape-token-0123456789abcdef";
    let guarded = TestApp::spawn_with(|c| {
        c.metrics_token = Some(joyfull_hub::config::Secret::new(token.to_owned()));
    })
    .await;
    let production = TestApp::spawn_with(|c| {
        c.environment = joyfull_hub::config::Environment::Production;
    })
    .await;
    let scrape = |app: &TestApp, bearer: Option<&str>| {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        request.send()
    };

    let without = scrape(&guarded, None).await.unwrap();
    let wrong = scrape(&guarded, Some("scrape-token-0123456789abcdeX"))
        .await
        .unwrap();
    let right = scrape(&guarded, Some(token)).await.unwrap();
    let hidden = scrape(&production, None).await.unwrap();

    assert_eq!(without.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("db_pool_connections"));
    assert_eq!(hidden.status(), 404);
}
