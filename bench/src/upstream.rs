//! The local upstream, run as a process of its own: an OpenAI-style completion endpoint for the tool
//! the hub invokes (and that the load generator also calls directly), and a trivial responder (the
//! machine's ceiling for any HTTP server under this load generator).

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

async fn completion(Json(input): Json<Value>) -> Json<Value> {
    let prompt = input
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let words = i64::try_from(prompt.split_whitespace().count()).unwrap_or(0);
    Json(json!({
        "object": "chat.completion",
        "model": "bench-echo",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": format!("echo: {prompt}") }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": words, "completion_tokens": words + 1, "total_tokens": 2 * words + 1 }
    }))
}

/// Serves until killed; prints `listening <address>` once ready.
pub async fn serve() -> anyhow::Result<()> {
    let router = Router::new()
        .route("/ping", get(|| async { "ok" }))
        .route("/v1/chat/completions", post(completion));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("listening {}\n", listener.local_addr()?).as_bytes())
        .await?;
    out.flush().await?;
    axum::serve(listener, router).await?;
    Ok(())
}
