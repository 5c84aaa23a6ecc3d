//! The bare framework baseline, run as a process of its own: async-graphql over axum, the crate
//! versions the hub uses, and nothing else (no database, no authentication, no limits). It answers
//! `{ hello }`, against which every read of the hub is reported, and the dashboard read's shape
//! (`me` and a page of 20 tools, built in memory for each request), which shows what resolving and
//! serialising that many fields costs the framework itself: the floor of the hub's dashboard read.

use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::routing::post_service;

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

/// Serves until killed; prints `listening <address>` once ready.
pub async fn serve() -> anyhow::Result<()> {
    let schema = Schema::build(Query, EmptyMutation, EmptySubscription).finish();
    let router = Router::new().route("/graphql", post_service(GraphQL::new(schema)));
    crate::upstream::serve_on_loopback(router).await
}
