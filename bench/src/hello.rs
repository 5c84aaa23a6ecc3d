//! The bare framework baseline, run as a process of its own: `{ hello }` with async-graphql over axum,
//! the crate versions the hub uses, and nothing else (no database, no authentication, no limits). Every
//! read of the hub is reported as a share of what this answers.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::routing::post_service;

struct Query;

#[Object]
impl Query {
    async fn hello(&self) -> &'static str {
        "world"
    }
}

/// Serves until killed; prints `listening <address>` once ready.
pub async fn serve() -> anyhow::Result<()> {
    let schema = Schema::build(Query, EmptyMutation, EmptySubscription).finish();
    let router = Router::new().route("/graphql", post_service(GraphQL::new(schema)));
    crate::upstream::serve_on_loopback(router).await
}
