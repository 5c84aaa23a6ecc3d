//! The bare framework baseline, run as a process of its own: async-graphql over axum, the crate
//! versions the hub uses, and nothing else (no database, no authentication, no limits). It answers
//! `{ hello }`, against which every read of the hub is reported, `invoke(input)`, which relays a call to
//! the bench's upstream (the floor of `invokeTool`: the framework and the hub's HTTP client, nothing
//! else), `invokeMetered(input)`, which also writes the call's usage row durably before answering (the
//! floor under the metering rule; see `floor_meter`), and the dashboard read's shape
//! (`me` and a page of 20 tools, built in memory for each request), which shows what resolving and
//! serialising that many fields costs the framework itself: the floor of the hub's dashboard read.
//! It also streams: `POST /graphql/stream` follows a subscription over Server-Sent Events as the hub
//! does (a `next` event per result, then `complete`), and `chunks(count)` yields that many events of
//! a streamed invocation's shape from memory and a last one carrying an invocation: what passing each
//! chunk through the framework as an event of its own costs. `relay(count)` asks the bench's upstream
//! for a streamed answer of `count` chunks (with reqwest, as the hub does) and yields an event per
//! chunk as it is read and parsed, then a last one: the framework relaying an upstream's stream and
//! nothing else (no authentication, no metering), the floor of the hub's streaming.

use std::collections::VecDeque;
use std::convert::Infallible;

use async_graphql::futures_util::{Stream, StreamExt, stream};
use async_graphql::{Context, ID, Json, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, post_service};

use crate::floor_meter::FloorMeter;

/// The environment variable that gives the upstream's address (`host:port`) to relay.
pub const UPSTREAM_ENV: &str = "BENCH_RELAY_UPSTREAM";

struct Query;

#[derive(SimpleObject)]
struct Me {
    id: ID,
    email: String,
    name: String,
    role: &'static str,
}

#[derive(SimpleObject)]
struct Tool {
    id: ID,
    name: String,
    slug: String,
    description: String,
    category: String,
    min_tier: &'static str,
}

#[derive(SimpleObject)]
struct ToolPage {
    total_count: i64,
    nodes: Vec<Tool>,
}

#[Object]
impl Query {
    async fn hello(&self) -> &'static str {
        "world"
    }

    async fn me(&self) -> Me {
        Me {
            id: ID("019a0000-0000-7000-8000-000000000001".into()),
            email: "reader@example.com".into(),
            name: "Reader".into(),
            role: "USER",
        }
    }

    async fn tools(&self, first: Option<i32>) -> ToolPage {
        let count = first.unwrap_or(20).clamp(0, 100);
        let nodes = (0..count)
            .map(|n| Tool {
                id: ID(format!("019a0000-0000-7000-8000-{n:012}")),
                name: format!("Tool {n}"),
                slug: format!("tool-{n}"),
                description: format!("What tool {n} does, in a sentence or two for the catalogue."),
                category: "text".into(),
                min_tier: "FREE",
            })
            .collect();
        ToolPage {
            total_count: i64::from(count),
            nodes,
        }
    }
}

#[derive(SimpleObject)]
struct Invocation {
    id: ID,
    status: &'static str,
    tokens_used: i32,
}

/// One event of a streamed answer, as the hub's `invokeToolStream` shapes it.
#[derive(SimpleObject)]
struct Chunk {
    text: String,
    invocation: Option<Invocation>,
}

struct Subscription;

#[Subscription]
impl Subscription {
    async fn chunks(&self, count: i32) -> impl Stream<Item = Chunk> + use<> {
        let words = (0..count.clamp(0, 4096)).map(|n| Chunk {
            text: format!("word{n} "),
            invocation: None,
        });
        let last = Chunk {
            text: String::new(),
            invocation: Some(Invocation {
                id: ID("019a0000-0000-7000-8000-000000000002".into()),
                status: "SUCCESS",
                tokens_used: count,
            }),
        };
        stream::iter(words.chain([last]))
    }

    async fn relay(
        &self,
        ctx: &Context<'_>,
        count: i32,
    ) -> async_graphql::Result<impl Stream<Item = Chunk> + use<>> {
        let upstream = ctx.data::<Upstream>()?;
        let response = upstream
            .client
            .post(&upstream.url)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "prompt": "stream these words back", "max_tokens": count, "stream": true,
                    "stream_options": { "include_usage": true }
                })
                .to_string(),
            )
            .send()
            .await
            .map_err(|e| async_graphql::Error::new(e.to_string()))?;
        let relay = Relay {
            response: Some(response),
            buffer: Vec::new(),
            ready: VecDeque::new(),
            tokens: 0,
        };
        Ok(stream::unfold(relay, |mut relay| async move {
            loop {
                if let Some(chunk) = relay.ready.pop_front() {
                    return Some((chunk, relay));
                }
                let response = relay.response.as_mut()?;
                match response.chunk().await {
                    Ok(Some(bytes)) => relay.read(&bytes),
                    Ok(None) | Err(_) => {
                        relay.response = None;
                        relay.ready.push_back(Chunk {
                            text: String::new(),
                            invocation: Some(Invocation {
                                id: ID("019a0000-0000-7000-8000-000000000003".into()),
                                status: "SUCCESS",
                                tokens_used: relay.tokens,
                            }),
                        });
                    }
                }
            }
        }))
    }
}

/// An invocation relayed: the upstream's answer and its tokens, as the hub's `invokeTool` answers.
#[derive(SimpleObject)]
struct Relayed {
    id: ID,
    status: &'static str,
    tokens_used: i64,
    output: Json<serde_json::Value>,
}

struct Mutation;

#[Object]
impl Mutation {
    /// Sends `input` to the upstream and answers what it said: the framework relaying a call and
    /// nothing else (no authentication, no quota, no metering), the floor of the hub's `invokeTool`.
    async fn invoke(
        &self,
        ctx: &Context<'_>,
        input: Json<serde_json::Value>,
    ) -> async_graphql::Result<Relayed> {
        let output = relay_call(ctx.data::<Upstream>()?, &input.0).await?;
        Ok(Relayed {
            id: ID("019a0000-0000-7000-8000-000000000004".into()),
            status: "SUCCESS",
            tokens_used: tokens_used(&output),
            output: Json(output),
        })
    }

    /// `invoke`, answering once the call's usage row is durable: the floor of `invokeTool` under the
    /// rule that usage commits before the answer (see `floor_meter`).
    async fn invoke_metered(
        &self,
        ctx: &Context<'_>,
        input: Json<serde_json::Value>,
    ) -> async_graphql::Result<Relayed> {
        let meter = ctx
            .data::<Option<FloorMeter>>()?
            .as_ref()
            .ok_or_else(|| async_graphql::Error::new("no database for the metered floor"))?;
        let output = relay_call(ctx.data::<Upstream>()?, &input.0).await?;
        let tokens = tokens_used(&output);
        let id = meter
            .write(tokens)
            .await
            .map_err(async_graphql::Error::new)?;
        Ok(Relayed {
            id: ID(id),
            status: "SUCCESS",
            tokens_used: tokens,
            output: Json(output),
        })
    }
}

/// Sends `input` to the upstream with the hub's HTTP client; its answer, parsed.
async fn relay_call(
    upstream: &Upstream,
    input: &serde_json::Value,
) -> async_graphql::Result<serde_json::Value> {
    let answer = upstream
        .client
        .post(&upstream.url)
        .header("content-type", "application/json")
        .body(input.to_string())
        .send()
        .await
        .map_err(|e| async_graphql::Error::new(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| async_graphql::Error::new(e.to_string()))?;
    serde_json::from_slice(&answer).map_err(|e| async_graphql::Error::new(e.to_string()))
}

fn tokens_used(output: &serde_json::Value) -> i64 {
    output["usage"]["total_tokens"].as_i64().unwrap_or(0)
}

/// Where `relay` asks for its stream.
struct Upstream {
    client: reqwest::Client,
    url: String,
}

/// A relayed stream: the answer being read, the bytes of an unfinished event, and parsed chunks.
struct Relay {
    response: Option<reqwest::Response>,
    buffer: Vec<u8>,
    ready: VecDeque<Chunk>,
    tokens: i32,
}

impl Relay {
    /// Adds what arrived and parses every event it completes.
    fn read(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = find(&self.buffer[start..], b"\n\n") {
            let event = &self.buffer[start..start + end];
            start += end + 2;
            let Some(data) = event.strip_prefix(b"data: ") else {
                continue;
            };
            if data == b"[DONE]" {
                continue;
            }
            let Ok(chunk) = serde_json::from_slice::<StreamChunk<'_>>(data) else {
                continue;
            };
            if let Some(text) = chunk
                .choices
                .first()
                .and_then(|choice| choice.delta.content.as_deref())
            {
                self.ready.push_back(Chunk {
                    text: text.to_owned(),
                    invocation: None,
                });
            }
            if let Some(usage) = chunk.usage {
                self.tokens = i32::try_from(usage.total_tokens).unwrap_or(i32::MAX);
            }
        }
        self.buffer.drain(..start);
    }
}

/// The fields of an OpenAI-style stream chunk the relay reads, borrowed where they can be.
#[derive(serde::Deserialize)]
struct StreamChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(serde::Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Delta<'a>,
}

#[derive(serde::Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct Usage {
    total_tokens: i64,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

type BareSchema = Schema<Query, Mutation, Subscription>;

/// GraphQL over Server-Sent Events, the graphql-sse "distinct connections" mode.
async fn event_stream(State(schema): State<BareSchema>, body: Bytes) -> Response {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let events = schema
        .execute_stream(request)
        .map(|response| {
            Event::default()
                .event("next")
                .json_data(&response)
                .unwrap_or_else(|_| Event::default().event("next").data("{}"))
        })
        .chain(stream::once(async {
            Event::default().event("complete").data("")
        }))
        .map(Ok::<Event, Infallible>);
    Sse::new(events).into_response()
}

/// Serves until killed; prints `listening <address>` once ready.
pub async fn serve() -> anyhow::Result<()> {
    let upstream = Upstream {
        client: reqwest::Client::new(),
        url: format!(
            "http://{}/v1/chat/completions",
            std::env::var(UPSTREAM_ENV).unwrap_or_default()
        ),
    };
    let meter = match std::env::var(crate::floor_meter::DATABASE_ENV) {
        Ok(url) if !url.is_empty() => Some(FloorMeter::start(&url).await?),
        _ => None,
    };
    let schema = Schema::build(Query, Mutation, Subscription)
        .data(upstream)
        .data(meter)
        .finish();
    let router = Router::new()
        .route("/graphql", post_service(GraphQL::new(schema.clone())))
        .route("/graphql/stream", post(event_stream))
        .with_state(schema);
    crate::upstream::serve_on_loopback(router).await
}
