//! GraphQL over HTTP (the WebSocket transport is in `websocket`).
//!
//! - `POST /graphql`: JSON bodies (a request or a batch). A body that is not valid JSON is answered
//!   with a GraphQL error (`BAD_USER_INPUT`), never a bare 400 text.
//! - `GET /graphql`: browsers get GraphiQL; a GraphQL GET request may run queries only (a mutation
//!   over GET is refused with 405, as the GraphQL-over-HTTP spec asks, so links cannot change state).
//! - `GET /playground`: GraphQL Playground.
//!
//! Responses are `application/json` unless the client asks for `application/graphql-response+json`,
//! in which case a request that failed before execution answers 400, per that media type's rules.

use async_graphql::http::{
    GraphQLPlaygroundConfig, GraphiQLSource, parse_query_string, playground_source,
};
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{BatchRequest, BatchResponse, Request};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::middleware::{ClientAddress, RequestId};
use super::{HttpState, error_response};
use crate::graphql::context::RequestContext;
use crate::graphql::loaders::Loaders;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// `POST /graphql`.
pub async fn post(
    State(state): State<HttpState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(ClientAddress(client_ip)): Extension<ClientAddress>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let media = ResponseMedia::negotiate(&headers);
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !content_type.starts_with("application/json")
            && !content_type.starts_with("application/graphql-response+json")
        {
            return error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "BAD_USER_INPUT",
                "Send GraphQL requests as JSON with Content-Type: application/json.",
            );
        }
    }
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                format!("The request body is not a valid GraphQL request: {e}."),
            );
        }
    };
    execute(&state, request_id, client_ip, &headers, batch, media).await
}

/// `GET /graphql`: GraphiQL for browsers, queries for everyone else.
pub async fn get(
    State(state): State<HttpState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(ClientAddress(client_ip)): Extension<ClientAddress>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let has_query = query.split('&').any(|pair| pair.starts_with("query="));
    if !has_query {
        if wants_html(&headers) && state.app.config.introspection {
            return Html(
                GraphiQLSource::build()
                    .endpoint("/graphql")
                    .subscription_endpoint("/graphql/ws")
                    .title("Joyfull Hub GraphiQL")
                    .finish(),
            )
            .into_response();
        }
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "Pass a GraphQL query as GET /graphql?query=…, or POST it as JSON.",
        );
    }
    let request = match parse_query_string(&query) {
        Ok(request) => request,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                format!("The query string is not a valid GraphQL request: {e}."),
            );
        }
    };
    if !is_query_operation(&request) {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_USER_INPUT",
            "Only queries may be sent with GET; send mutations and subscriptions with POST.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let media = ResponseMedia::negotiate(&headers);
    execute(
        &state,
        request_id,
        client_ip,
        &headers,
        BatchRequest::Single(request),
        media,
    )
    .await
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

async fn execute(
    state: &HttpState,
    request_id: String,
    client_ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    batch: BatchRequest,
    media: ResponseMedia,
) -> Response {
    let limits = state.app.config.graphql;
    if batch.iter().any(|request| request.query.trim().is_empty()) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "The request has no query: send {\"query\": \"…\"}.",
        );
    }
    let caller = match crate::auth::caller::authenticate(&state.app, headers).await {
        Ok(caller) => caller,
        Err(e) => {
            let mut response = error_response(e.http_status(), e.code(), e.public_message());
            if e.code() == "UNAUTHENTICATED" {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return response;
        }
    };
    let context = RequestContext {
        request_id,
        caller,
        client_ip,
        user_agent: RequestContext::user_agent_of(headers),
    };
    let batch = match batch {
        BatchRequest::Single(request) => {
            BatchRequest::Single(request.data(context).data(Loaders::new(&state.app)))
        }
        BatchRequest::Batch(requests) if requests.is_empty() => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "The batch is empty: send at least one request.",
            );
        }
        BatchRequest::Batch(requests) if requests.len() > limits.max_batch => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "QUERY_TOO_COMPLEX",
                format!(
                    "The batch holds {} requests; the limit is {}.",
                    requests.len(),
                    limits.max_batch
                ),
            );
        }
        BatchRequest::Batch(requests) => BatchRequest::Batch(
            requests
                .into_iter()
                .map(|request| request.data(context.clone()).data(Loaders::new(&state.app)))
                .collect(),
        ),
    };
    let operations: Vec<String> = batch
        .iter()
        .map(|request| operation_label(state, request))
        .collect();

    let response = state.schema.execute_batch(batch).await;

    let responses: Vec<&async_graphql::Response> = match &response {
        BatchResponse::Single(r) => vec![r],
        BatchResponse::Batch(rs) => rs.iter().collect(),
    };
    for (operation, single) in operations.iter().zip(&responses) {
        let status = single
            .errors
            .first()
            .and_then(|e| e.extensions.as_ref())
            .and_then(|ext| ext.get("code"))
            .map(|code| code.to_string().trim_matches('"').to_owned())
            .unwrap_or_else(|| "OK".to_owned());
        metrics::counter!(
            "graphql_requests_total",
            "operation" => operation.clone(),
            "status" => status
        )
        .increment(1);
    }
    // A request error (nothing executed) is a 400 under the graphql-response+json media type.
    let request_error = matches!(&response, BatchResponse::Single(r) if !r.errors.is_empty() && r.data == async_graphql::Value::Null);
    let status = if media == ResponseMedia::GraphqlResponseJson && request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a GraphQL response");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                crate::error::INTERNAL_MESSAGE,
            );
        }
    };
    let mut http_response = (status, body).into_response();
    let headers = http_response.headers_mut();
    for (name, value) in response.http_headers_iter() {
        headers.append(name, value);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    http_response
}

/// The metric label for a request: its operation name when it is a valid GraphQL name (bounded in
/// number), else `anonymous`.
fn operation_label(state: &HttpState, request: &Request) -> String {
    match request.operation_name.as_deref() {
        Some(name)
            if name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            state.app.operation_labels.label(name)
        }
        Some(_) => "invalid".to_owned(),
        None => "anonymous".to_owned(),
    }
}

/// Whether the operation a GET request would run is a query. Unparsable documents pass: execution
/// reports the syntax error properly.
fn is_query_operation(request: &Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| op),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_none_or(|op| op.node.ty == OperationType::Query)
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseMedia {
    Json,
    GraphqlResponseJson,
}

impl ResponseMedia {
    fn negotiate(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if accept.contains(GRAPHQL_RESPONSE_JSON) {
            Self::GraphqlResponseJson
        } else {
            Self::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
        }
    }
}
