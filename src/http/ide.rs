//! The in-browser IDEs: GraphiQL at `GET /graphql` (for browsers) and GraphQL Playground at
//! `GET /playground`. Both are off unless introspection is on.

use async_graphql::http::{GraphQLPlaygroundConfig, GraphiQLSource, playground_source};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::{HttpState, error_response};

/// GraphiQL, for a browser's `GET /graphql`.
pub fn graphiql(_state: &HttpState) -> Response {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Joyfull Hub GraphiQL")
            .finish(),
    )
    .into_response()
}

/// `GET /playground`.
pub async fn playground(State(state): State<HttpState>) -> Response {
    if !state.app.config.introspection {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The GraphQL Playground is turned off on this server.",
        );
    }
    Html(playground_source(
        GraphQLPlaygroundConfig::new("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Joyfull Hub Playground"),
    ))
    .into_response()
}
