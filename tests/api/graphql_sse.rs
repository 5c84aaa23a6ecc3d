//! GraphQL over Server-Sent Events at `POST /graphql/stream` (graphql-sse, distinct connections): any
//! subscription streams as `next` events, an operation ends with `complete`, errors before execution
//! are a `next`, credentials are checked when the stream opens and while it stays open.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::sse::EventStream;
use crate::helpers::upstream::Upstream;
use crate::helpers::{Catalogue, TestApp};

#[tokio::test]
async fn a_query_answers_one_next_then_complete_and_errors_before_execution_are_a_next() {
    let app = TestApp::spawn().await;
    let ada = app.register("Ada", "ada@example.com").await;

    let response = EventStream::open(
        &app,
        Some(&ada.access_token),
        json!({ "query": "{ me { name } }" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut answered = EventStream::new(response);
    let (first, data) = answered.next_json().await;
    let (last, _) = answered.next_json().await;

    let invalid = EventStream::open(
        &app,
        Some(&ada.access_token),
        json!({ "query": "{ nope }" }),
    )
    .await;
    let invalid_status = invalid.status();
    let mut invalid = EventStream::new(invalid);
    let (kind, refused) = invalid.next_json().await;

    assert_eq!(
        (first.as_str(), &data["data"]["me"]["name"]),
        ("next", &json!("Ada"))
    );
    assert_eq!(last, "complete");
    assert!(
        answered.next().await.is_none(),
        "the stream ends after complete"
    );
    assert_eq!(invalid_status, 200);
    assert_eq!(kind, "next");
    assert!(refused["errors"][0]["message"].is_string(), "{refused}");
}

#[tokio::test]
async fn a_subscription_streams_live_usage_and_ends_when_its_key_is_revoked() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let Catalogue { tool, user, .. } = app.catalogue(upstream.url("/ok")).await;
    let (key, key_id) = app.api_key_with_id(&user.access_token).await;

    let response = EventStream::open(
        &app,
        Some(&key),
        json!({ "query": "subscription { usageEvents { tokensUsed status } }" }),
    )
    .await;
    let mut events = EventStream::new(response);
    // The subscription is live once the stream is open; give it a moment to listen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let invoked = app.invoke(&key, &tool, json!({}), None).await;
    let (kind, event) = events.next_json().await;

    app.graphql_as(
        &user.access_token,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": key_id }),
    )
    .await;
    let (last_kind, last) = events.next_json().await;
    let ended = events.next().await;

    assert_eq!(
        invoked["data"]["invokeTool"]["status"], "SUCCESS",
        "{invoked}"
    );
    assert_eq!(kind, "next");
    assert_eq!(event["data"]["usageEvents"]["tokensUsed"], 42, "{event}");
    assert_eq!(last_kind, "next");
    assert_eq!(
        last["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{last}"
    );
    assert!(ended.is_none(), "the stream ends: {ended:?}");
}

#[tokio::test]
async fn bad_credentials_are_refused_before_the_stream_opens() {
    let app = TestApp::spawn().await;

    let response = EventStream::open(
        &app,
        Some("not-a-token"),
        json!({ "query": "subscription { usageEvents { id } }" }),
    )
    .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();

    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}
