//! The bare framework baseline, run as a process of its own: async-graphql over axum, the crate
//! versions the hub uses, and nothing else (no database, no authentication, no limits). It answers
//! `{ hello }`, against which every read of the hub is reported, and the dashboard read's shape
//! (`me` and a page of 20 tools, built in memory for each request), which shows what resolving and
//! serialising that many fields costs the framework itself: the floor of the hub's dashboard read.
//! It also streams: `POST /graphql/stream` follows a subscription over Server-Sent Events as the hub
//! does (a `next` event per result, then `complete`), and `chunks(count)` yields that many events of
//! a streamed invocation's shape from memory and a last one carrying an invocation: what passing each
//! chunk through the framework as an event of its own costs, the floor of the hub's streaming.

use std::convert::Infallible;

use async_graphql::futures_util::{Stream, StreamExt, stream};
use async_graphql::{EmptyMutation, ID, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, post_service};

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
}

type BareSchema = Schema<Query, EmptyMutation, Subscription>;

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
    let schema = Schema::build(Query, EmptyMutation, Subscription).finish();
    let router = Router::new()
        .route("/graphql", post_service(GraphQL::new(schema.clone())))
        .route("/graphql/stream", post(event_stream))
        .with_state(schema);
    crate::upstream::serve_on_loopback(router).await
}
