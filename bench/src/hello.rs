//! The bare framework baseline, run as a process of its own: `{ hello }` with async-graphql over axum,
//! the crate versions the hub uses, and nothing else (no database, no authentication, no limits). Every
//! read of the hub is reported as a share of what this answers.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::routing::post_service;
use tokio::io::AsyncWriteExt;

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("listening {}\n", listener.local_addr()?).as_bytes())
        .await?;
    out.flush().await?;
    axum::serve(listener, router).await?;
    Ok(())
}
