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
