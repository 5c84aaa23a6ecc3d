//! Streaming upstreams: an answer sent as Server-Sent Events (OpenAI's `stream: true` shape) is collected
//! into one answer by `invokeTool`, metered from its usage chunk (which the hub asks a tool that streams
//! for), or estimated and flagged without one.

use serde_json::json;

use crate::helpers::TestApp;
use crate::helpers::upstream::Upstream;

#[tokio::test]
async fn invoke_tool_collects_an_event_stream_and_meters_its_usage_chunk() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let with_usage = app.catalogue(upstream.url("/sse")).await;
    let root = &with_usage.root;
    let streaming = app
        .graphql_as(
            &root.access_token,
            "mutation($id: ID!) { updateTool(id: $id, input: {streams: true}) { streams } }",
            json!({ "id": with_usage.tool }),
        )
        .await;
    // The same upstream, but the tool does not say it streams: nobody asks it for the usage chunk.
    let without_usage = app
        .create_tool(
            root,
            json!({ "name": "Quiet", "endpoint": upstream.url("/sse") }),
        )
        .await;
    let token = &with_usage.user.access_token;

    let streamed = app
        .invoke(token, &with_usage.tool, json!({ "messages": [] }), None)
        .await;
    let estimated = app
        .invoke(token, &without_usage, json!({ "messages": [] }), None)
        .await;

    assert_eq!(
        streaming["data"]["updateTool"]["streams"], true,
        "{streaming}"
    );
    let answer = &streamed["data"]["invokeTool"];
    assert_eq!(answer["status"], "SUCCESS", "{streamed}");
    assert_eq!(
        answer["output"]["choices"][0]["message"]["content"],
        "Hello"
    );
    assert_eq!(answer["output"]["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["tokensUsed"], 5, "the usage chunk: {streamed}");
    assert_eq!(answer["tokensEstimated"], false);
    let answer = &estimated["data"]["invokeTool"];
    assert_eq!(answer["status"], "SUCCESS", "{estimated}");
    assert_eq!(
        answer["output"]["choices"][0]["message"]["content"],
        "Hello"
    );
    assert_eq!(answer["tokensEstimated"], true);
    assert!(answer["tokensUsed"].as_i64() > Some(0));
}

const STREAM: &str = "subscription($t: ID!) { invokeToolStream(toolId: $t, input: {messages: []}) { text chunk invocation { id status tokensUsed tokensEstimated } } }";

/// `invokeToolStream` of the catalogue's tool, as Ada, over `POST /graphql/stream`.
async fn stream_over_sse(
    app: &TestApp,
    catalogue: &crate::helpers::Catalogue,
) -> reqwest::Response {
    app.client
        .post(app.url("/graphql/stream"))
        .bearer_auth(&catalogue.user.access_token)
        .json(&json!({ "query": STREAM, "variables": { "t": catalogue.tool } }))
        .send()
        .await
        .unwrap()
}

/// A tool on `/sse-slow` that says it streams, and Ada on the Free plan.
async fn slow_streaming_tool(app: &TestApp, upstream: &Upstream) -> crate::helpers::Catalogue {
    let catalogue = app.catalogue(upstream.url("/sse-slow")).await;
    app.sql(&format!(
        "UPDATE tools SET streams = true WHERE id = '{}'",
        catalogue.tool
    ))
    .await;
    catalogue
}

#[tokio::test]
async fn invoke_tool_stream_sends_chunks_as_they_arrive_over_the_websocket_and_meters_exactly() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let catalogue = slow_streaming_tool(&app, &upstream).await;
    let mut socket = crate::helpers::ws::connect(&app).await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", catalogue.user.access_token) } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": STREAM, "variables": { "t": catalogue.tool } } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let mut first_chunk_after = None;
    let mut texts = String::new();
    let mut last = None;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(15), socket.next())
            .await
            .expect("a message within 15 s")
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        match value["type"].as_str() {
            Some("next") => {
                let event = &value["payload"]["data"]["invokeToolStream"];
                if event["invocation"].is_null() {
                    first_chunk_after.get_or_insert(started.elapsed());
                    texts.push_str(event["text"].as_str().unwrap());
                } else {
                    last = Some(event["invocation"].clone());
                }
            }
            Some("complete") => break,
            Some("connection_ack") => {}
            other => panic!("{other:?}: {value}"),
        }
    }
    let rows = app
        .sql_number(
            "SELECT count(*) AS n FROM usage_events WHERE status = 'SUCCESS' AND tokens_used = 35",
        )
        .await;

    let invocation = last.expect("a last event with the invocation");
    assert_eq!(invocation["status"], "SUCCESS", "{invocation}");
    assert_eq!(
        invocation["tokensUsed"], 35,
        "the usage chunk: {invocation}"
    );
    assert_eq!(invocation["tokensEstimated"], false);
    assert_eq!(
        texts,
        format!(
            "Hello{}",
            " .".repeat(crate::helpers::upstream::SLOW_STREAM_DOTS)
        )
    );
    let first = first_chunk_after.unwrap();
    assert!(
        first < std::time::Duration::from_millis(1500),
        "the first chunk came before the stream ended (about 3.4 s): {first:?}"
    );
    assert_eq!(rows, 1, "the usage row was written before the last event");
}

#[tokio::test]
async fn a_stream_left_early_over_sse_stops_the_upstream_and_meters_what_arrived() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let catalogue = slow_streaming_tool(&app, &upstream).await;
    let mut response = stream_over_sse(&app, &catalogue).await;
    assert_eq!(response.status(), 200);

    let mut received = String::new();
    while received.matches("event: next").count() < 3 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
            .await
            .expect("events within 10 s")
            .unwrap()
            .expect("an open stream");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    let left = std::time::Instant::now();
    drop(response);

    let mut metered = None;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let count = app
            .sql_number(
                "SELECT count(*) AS n FROM usage_events WHERE tokens_estimated AND tokens_used > 0",
            )
            .await;
        if count == 1 {
            metered = Some(left.elapsed());
            break;
        }
    }

    assert!(received.contains("Hel"), "{received}");
    let metered = metered.expect("the call is metered once the client left");
    assert!(
        metered < std::time::Duration::from_millis(2000),
        "the upstream call stopped when the client left, well before its 3.4 s: {metered:?}"
    );
    let reserved = app
        .sql_number("SELECT tokens_reserved AS n FROM subscriptions")
        .await;
    assert_eq!(reserved, 0, "the reservation was settled");
}

#[tokio::test]
async fn invoke_tool_stream_over_sse_ends_with_the_invocation_then_complete() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let catalogue = app.catalogue(upstream.url("/sse")).await;
    let response = stream_over_sse(&app, &catalogue).await;
    let body = response.text().await.unwrap();

    let events: Vec<&str> = body
        .split("\n\n")
        .filter_map(|block| block.lines().find_map(|line| line.strip_prefix("event:")))
        .map(str::trim)
        .collect();
    assert_eq!(events.last(), Some(&"complete"), "{body}");
    assert!(
        events.iter().filter(|e| **e == "next").count() >= 2,
        "{body}"
    );
    assert!(body.contains("\"status\":\"SUCCESS\""), "{body}");
}

#[tokio::test]
async fn a_stream_that_breaks_midway_is_an_upstream_error_charged_for_what_it_produced() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let catalogue = app.catalogue(upstream.url("/sse-broken")).await;

    let broken = app
        .invoke(
            &catalogue.user.access_token,
            &catalogue.tool,
            json!({ "messages": [] }),
            None,
        )
        .await;

    assert_eq!(
        crate::helpers::error_code(&broken),
        "UPSTREAM_UNAVAILABLE",
        "{broken}"
    );
    assert_eq!(
        app.sql_number(
            "SELECT count(*) AS n FROM usage_events WHERE status = 'ERROR' \
             AND error_code = 'UPSTREAM_UNAVAILABLE' AND tokens_estimated AND tokens_used > 0"
        )
        .await,
        1,
        "the output produced before the break is metered"
    );
    assert_eq!(
        app.sql_number("SELECT tokens_used AS n FROM subscriptions")
            .await,
        app.sql_number("SELECT tokens_used AS n FROM usage_events")
            .await,
        "and charged"
    );
}

/// A key that may only read cannot stream a tool call on either transport's behalf.
#[tokio::test]
async fn a_key_without_the_invoke_scope_cannot_stream_a_call() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let catalogue = app.catalogue(upstream.url("/sse")).await;
    let created = app
        .graphql_as(
            &catalogue.user.access_token,
            "mutation { createApiKey(input: {name: \"reader\", scopes: [READ]}) { key } }",
            json!({}),
        )
        .await;
    let reader = created["data"]["createApiKey"]["key"].as_str().unwrap();

    let body = app
        .post_text_as(
            "/graphql/stream",
            reader,
            &json!({ "query": STREAM, "variables": { "t": catalogue.tool } }),
        )
        .await;

    assert!(body.contains("\"FORBIDDEN\""), "{body}");
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        0,
        "nothing was called or charged"
    );
}
