//! Automatic persisted queries as Apollo clients send them: the hash alone over POST or GET, a miss that
//! asks for the text, and the same checks on a stored text as on a sent one.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, error_code};

const QUERY: &str = "query Plans { plans { tier name } }";

fn sha256_hex(text: &str) -> String {
    joyfull_hub::secrets::hex(&Sha256::digest(text.as_bytes()))
}

fn extension(text: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(text) } })
}

async fn get_by_hash(app: &TestApp, text: &str) -> reqwest::Response {
    let extensions = extension(text).to_string();
    let url = reqwest::Url::parse_with_params(
        &app.url("/graphql"),
        &[
            ("extensions", extensions.as_str()),
            ("operationName", "Plans"),
        ],
    )
    .unwrap();
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("GET /graphql")
}

#[tokio::test]
async fn a_hash_alone_misses_then_the_text_registers_it_and_the_hash_runs_over_post_and_get() {
    let app = TestApp::spawn().await;

    let miss = app
        .post_graphql(&json!({ "extensions": extension(QUERY) }))
        .await;
    assert_eq!(miss.status(), 200);
    assert_eq!(
        miss.headers()["cache-control"],
        "private, no-cache, must-revalidate"
    );
    let miss: Value = miss.json().await.unwrap();
    assert_eq!(error_code(&miss), "PERSISTED_QUERY_NOT_FOUND", "{miss}");
    assert_eq!(miss["errors"][0]["message"], "PersistedQueryNotFound");

    let registered: Value = app
        .post_graphql(&json!({ "query": QUERY, "extensions": extension(QUERY) }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        registered["data"]["plans"][0]["tier"], "FREE",
        "{registered}"
    );

    let by_post: Value = app
        .post_graphql(&json!({ "extensions": extension(QUERY), "operationName": "Plans" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_post["data"], registered["data"]);
    let by_get = get_by_hash(&app, QUERY).await;
    assert_eq!(by_get.status(), 200);
    let by_get: Value = by_get.json().await.unwrap();
    assert_eq!(by_get["data"], registered["data"], "{by_get}");

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for result in ["hit", "miss", "registered"] {
        let label = format!("result=\"{result}\"");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("graphql_persisted_queries_total") && l.contains(&label)),
            "{result}: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_miss_is_a_200_even_for_graphql_response_json_clients() {
    let app = TestApp::spawn().await;
    let miss = reqwest::Client::new()
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "extensions": extension("{ __typename }") }))
        .send()
        .await
        .unwrap();
    assert_eq!(miss.status(), 200);
    let body: Value = miss.json().await.unwrap();
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn a_text_sent_under_another_texts_hash_is_refused_and_never_stored() {
    let app = TestApp::spawn().await;
    let innocent = "{ __typename }";

    let poisoned: Value = app
        .post_graphql(&json!({ "query": "{ plans { name } }", "extensions": extension(innocent) }))
        .await
        .json()
        .await
        .unwrap();
    let afterwards: Value = app
        .post_graphql(&json!({ "extensions": extension(innocent) }))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(error_code(&poisoned), "BAD_USER_INPUT", "{poisoned}");
    assert!(poisoned["data"].is_null(), "nothing ran: {poisoned}");
    assert_eq!(error_code(&afterwards), "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn malformed_extensions_and_other_versions_are_bad_user_input() {
    let app = TestApp::spawn().await;
    for extensions in [
        json!({ "persistedQuery": { "version": 2, "sha256Hash": sha256_hex("{ x }") } }),
        json!({ "persistedQuery": { "version": 1, "sha256Hash": "abc" } }),
        json!({ "persistedQuery": "yes" }),
    ] {
        let body: Value = app
            .post_graphql(&json!({ "extensions": extensions }))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{extensions}: {body}");
    }
}

#[tokio::test]
async fn a_stored_mutation_still_cannot_run_over_get() {
    let app = TestApp::spawn().await;
    let mutation = "mutation Plans { requestPasswordReset(email: \"nobody@example.com\") }";
    app.post_graphql(&json!({ "query": mutation, "extensions": extension(mutation) }))
        .await;
    let registered: Value = app
        .post_graphql(&json!({ "extensions": extension(mutation) }))
        .await
        .json()
        .await
        .unwrap();

    let over_get = get_by_hash(&app, mutation).await;

    assert_eq!(
        registered["data"]["requestPasswordReset"], true,
        "the mutation was stored: {registered}"
    );
    assert_eq!(over_get.status(), 405);
    assert_eq!(over_get.headers()["allow"], "POST");
}

#[tokio::test]
async fn only_texts_that_run_are_stored_and_the_store_is_bounded() {
    let app = TestApp::spawn_with(|config| config.graphql.persisted_queries_bytes = 64).await;
    let invalid = "{ noSuchField }";
    let long = format!("{{ {} }}", "__typename ".repeat(10));
    let short = "{ __typename }";

    app.post_graphql(&json!({ "query": invalid, "extensions": extension(invalid) }))
        .await;
    app.post_graphql(&json!({ "query": long, "extensions": extension(&long) }))
        .await;
    app.post_graphql(&json!({ "query": short, "extensions": extension(short) }))
        .await;

    let lookup = |text: String| {
        let app = &app;
        async move {
            let body: Value = app
                .post_graphql(&json!({ "extensions": extension(&text) }))
                .await
                .json()
                .await
                .unwrap();
            body
        }
    };
    assert_eq!(
        error_code(&lookup(invalid.to_owned()).await),
        "PERSISTED_QUERY_NOT_FOUND"
    );
    assert_eq!(
        error_code(&lookup(long.clone()).await),
        "PERSISTED_QUERY_NOT_FOUND",
        "the older text made room for the newer"
    );
    assert_eq!(
        lookup(short.to_owned()).await["data"]["__typename"],
        "Query"
    );
}

#[tokio::test]
async fn a_server_keeping_no_persisted_queries_says_so() {
    let app = TestApp::spawn_with(|config| config.graphql.persisted_queries_bytes = 0).await;
    let body: Value = app
        .post_graphql(&json!({ "query": QUERY, "extensions": extension(QUERY) }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_SUPPORTED", "{body}");
}

#[tokio::test]
async fn in_a_batch_a_miss_answers_its_own_slot_and_the_rest_runs() {
    let app = TestApp::spawn().await;
    let body: Value = app
        .post_graphql(&json!([
            { "extensions": extension("{ plans { name } }") },
            { "query": "{ __typename }" }
        ]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&body[0]), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert_eq!(body[1]["data"]["__typename"], "Query", "{body}");
}
