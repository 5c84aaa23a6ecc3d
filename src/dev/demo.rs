//! Development conveniences: a built-in mock upstream that answers like an OpenAI-compatible chat
//! completion (with a `usage` block), and two demo tools that use it, so a fresh `cargo run` can
//! invoke a tool from GraphiQL. Production never serves or seeds them.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::billing::model::PlanTier;
use crate::tools::model::NewTool;
use crate::tools::service;

/// The mock upstream's routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        "/demo-upstream/{model}/v1/chat/completions",
        post(chat_completion),
    )
}

fn words(text: &str) -> i64 {
    i64::try_from(text.split_whitespace().count())
        .unwrap_or(i64::MAX)
        .max(1)
}

async fn chat_completion(Path(model): Path<String>, Json(body): Json<Value>) -> Response {
    let prompt = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|m| m.get("role") == Some(&json!("user")))
        })
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .or_else(|| body.get("prompt").and_then(Value::as_str))
        .map_or_else(|| body.to_string(), str::to_owned);
    let reply = match model.as_str() {
        "echo" => prompt.clone(),
        "summarize" => {
            let first = prompt
                .split_inclusive(['.', '!', '?'])
                .next()
                .unwrap_or(&prompt)
                .trim();
            format!("{first} ({} words in all)", words(&prompt))
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": { "message": "unknown model" } })),
            )
                .into_response();
        }
    };
    let (prompt_tokens, completion_tokens) = (words(&prompt), words(&reply));
    Json(json!({
        "id": format!("chatcmpl-demo-{}", uuid::Uuid::new_v4()),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": format!("demo-{model}"),
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": reply }, "finish_reason": "stop" }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    }))
    .into_response()
}

fn demo_tool(slug: &str, name: &str, description: &str, endpoint: String) -> NewTool {
    NewTool {
        id: uuid::Uuid::now_v7(),
        slug: slug.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        usage_notes: r#"Send an OpenAI-style chat body, e.g. {"messages": [{"role": "user", "content": "Hello there. How are you?"}]}"#.to_owned(),
        category: "demo".to_owned(),
        endpoint,
        method: "POST".to_owned(),
        headers: json!([]),
        timeout_ms: 10_000,
        tokens_path: "usage.total_tokens".to_owned(),
        estimated_tokens: 500,
        max_tokens_per_call: crate::tools::service::DEFAULT_MAX_TOKENS_PER_CALL,
        min_tier: PlanTier::Free,
        enabled: true,
        streams: false,
    }
}

/// Creates the two demo tools (unless they exist), pointing at this server's mock upstream.
pub async fn seed(app: &AppState, listen: SocketAddr) -> anyhow::Result<()> {
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        listen.ip().to_string()
    };
    let host = if listen.is_ipv6() && !listen.ip().is_unspecified() {
        format!("[{host}]")
    } else {
        host
    };
    let base = format!("http://{host}:{}/demo-upstream", listen.port());
    let tools = [
        demo_tool(
            "demo-echo",
            "Demo Echo",
            "Answers with your message (a built-in mock upstream).",
            format!("{base}/echo/v1/chat/completions"),
        ),
        demo_tool(
            "demo-summarizer",
            "Demo Summarizer",
            "Answers with the first sentence of your message and its length (a built-in mock upstream).",
            format!("{base}/summarize/v1/chat/completions"),
        ),
    ];
    for tool in &tools {
        if service::seed(app, tool)
            .await
            .map_err(|e| anyhow::anyhow!(e.public_message()))?
        {
            tracing::info!(slug = %tool.slug, "seeded a demo tool (development only; HUB_DEMO_SEED=false turns this off)");
        }
    }
    Ok(())
}
