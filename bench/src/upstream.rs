//! The local upstream, run as a process of its own: an OpenAI-style completion endpoint for the tool
//! the hub invokes (and that the load generator also calls directly), and a trivial responder (the
//! machine's ceiling for any HTTP server under this load generator).

use axum::Json;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Chunks a streamed answer holds before its usage chunk, unless `max_tokens` asks for another number
/// (up to [`MOST_CHUNKS`]).
const STREAM_CHUNKS: usize = 16;
const MOST_CHUNKS: usize = 4096;

async fn completion(Json(input): Json<Value>) -> Response {
    let prompt = input
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let words = i64::try_from(prompt.split_whitespace().count()).unwrap_or(0);
    if input.get("stream") == Some(&Value::Bool(true)) {
        let chunks = input
            .get("max_tokens")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .map_or(STREAM_CHUNKS, |n| n.clamp(1, MOST_CHUNKS));
        return streamed(
            words,
            chunks,
            input["stream_options"]["include_usage"] == true,
        );
    }
    Json(json!({
        "object": "chat.completion",
        "model": "bench-echo",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": format!("echo: {prompt}") }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": words, "completion_tokens": words + 1, "total_tokens": 2 * words + 1 }
    }))
    .into_response()
}

/// OpenAI's `stream: true` answer: `chunks` chunks of one word, the usage chunk when asked,
/// then `[DONE]`. The events are written at once (a model would space them): the scenario measures what
/// the hub adds to the first chunk and how many chunks it can pass on, not a model's pace.
fn streamed(words: i64, chunks: usize, usage: bool) -> Response {
    let mut events: Vec<String> = (0..chunks)
        .map(|i| {
            let chunk = json!({ "object": "chat.completion.chunk", "model": "bench-echo",
                "choices": [{ "index": 0, "delta": { "content": format!("word{i} ") } }] });
            format!("data: {chunk}\n\n")
        })
        .collect();
    if usage {
        let chunk = json!({ "object": "chat.completion.chunk", "choices": [],
            "usage": { "prompt_tokens": words, "completion_tokens": chunks, "total_tokens": words + chunks as i64 } });
        events.push(format!("data: {chunk}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    ([("content-type", "text/event-stream")], events.concat()).into_response()
}

/// Serves until killed; prints `listening <address>` once ready.
pub async fn serve() -> anyhow::Result<()> {
    let router = Router::new()
        .route("/ping", get(|| async { "ok" }))
        .route("/v1/chat/completions", post(completion));
    serve_on_loopback(router).await
}

/// Serves `router` on a free loopback port until killed, after printing `listening <address>` (what
/// `server::start_helper` reads).
pub async fn serve_on_loopback(router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("listening {}\n", listener.local_addr()?).as_bytes())
        .await?;
    out.flush().await?;
    // As the hub does: small writes (events, short answers) go out at once, not after a delayed ACK.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
}
