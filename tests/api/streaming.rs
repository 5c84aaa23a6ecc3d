//! Streaming upstreams: an answer sent as Server-Sent Events (OpenAI's `stream: true` shape) is collected
//! into one answer by `invokeTool`, metered from its usage chunk, or estimated and flagged without one.

use serde_json::json;

use crate::helpers::TestApp;
use crate::helpers::upstream::Upstream;

#[tokio::test]
async fn invoke_tool_collects_an_event_stream_and_meters_its_usage_chunk() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let with_usage = app.catalogue(upstream.url("/sse")).await;
    let root = &with_usage.root;
    let without_usage = app
        .create_tool(
            root,
            json!({ "name": "Quiet", "endpoint": upstream.url("/sse-no-usage") }),
        )
        .await;
    let token = &with_usage.user.access_token;

    let streamed = app
        .invoke(token, &with_usage.tool, json!({ "messages": [] }), None)
        .await;
    let estimated = app
        .invoke(token, &without_usage, json!({ "messages": [] }), None)
        .await;

    let answer = &streamed["data"]["invokeTool"];
    assert_eq!(answer["status"], "SUCCESS", "{streamed}");
    assert_eq!(
        answer["output"]["choices"][0]["message"]["content"],
        "Hello"
    );
    assert_eq!(answer["output"]["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["tokensUsed"], 5);
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
