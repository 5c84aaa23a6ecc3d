//! GraphQL over HTTP (the WebSocket transport is in `websocket`).
//!
//! - `POST /graphql`: JSON bodies (a request or a batch). A body that is not valid JSON is answered
//!   with a GraphQL error (`BAD_USER_INPUT`), never a bare 400 text.
//! - `GET /graphql`: browsers get GraphiQL; a GraphQL GET request may run queries only (a mutation
//!   over GET is refused with 405, as the GraphQL-over-HTTP spec asks, so links cannot change state).
//! - Both take automatic persisted queries (see `graphql::persisted_queries`); the text a hash stands for
//!   passes the same checks as a text sent in full.
//!
//! Responses are `application/json` unless the client asks for `application/graphql-response+json`,
//! in which case a request that failed before execution answers 400, per that media type's rules.

use async_graphql::http::parse_query_string;
use async_graphql::{BatchRequest, BatchResponse, Executor, Request};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::middleware::{ClientAddress, RequestId};
use super::{HttpState, error_response};
use super::{anonymous_pace, operation};
use crate::clock::Deadline;
use crate::graphql::context::RequestContext;
use crate::graphql::cost::CostSlot;
use crate::graphql::limits::coded_error;
use crate::graphql::loaders::Loaders;
use crate::graphql::persisted_queries::{self, Outcome, Refusal};
use crate::graphql::rate_headers;
use crate::telemetry::traces;
use crate::verbatim::Verbatim;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// `POST /graphql`.
pub async fn post(
    State(state): State<HttpState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(ClientAddress(client_ip)): Extension<ClientAddress>,
    Extension(deadline): Extension<Deadline>,
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
    let call = Call {
        request_id,
        client_ip,
        method: Method::Post,
        media,
        deadline,
    };
    execute(&state, call, &headers, batch).await
}

/// `GET /graphql`: GraphiQL for browsers, queries for everyone else.
pub async fn get(
    State(state): State<HttpState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(ClientAddress(client_ip)): Extension<ClientAddress>,
    Extension(deadline): Extension<Deadline>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let is_request = query
        .split('&')
        .any(|pair| pair.starts_with("query=") || pair.starts_with("extensions="));
    if !is_request {
        if wants_html(&headers) && state.app.config.introspection {
            return super::ide::graphiql(&state);
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
    let media = ResponseMedia::negotiate(&headers);
    let call = Call {
        request_id,
        client_ip,
        method: Method::Get,
        media,
        deadline,
    };
    execute(&state, call, &headers, BatchRequest::Single(request)).await
}

/// Who sent a request, and how.
struct Call {
    request_id: String,
    client_ip: Option<std::net::IpAddr>,
    method: Method,
    media: ResponseMedia,
    /// The request's deadline, which an invocation pushes back to its tool's timeout.
    deadline: Deadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// One request of a batch, once its persisted query is resolved.
enum Slot {
    Run {
        request: Box<Request>,
        register: Option<(persisted_queries::Hash, String)>,
    },
    Refused(Refusal),
}

async fn execute(
    state: &HttpState,
    call: Call,
    headers: &HeaderMap,
    batch: BatchRequest,
) -> Response {
    let limits = state.app.config.graphql;
    let single = matches!(batch, BatchRequest::Single(_));
    let requests = match batch {
        BatchRequest::Single(request) => vec![request],
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
        BatchRequest::Batch(requests) => requests,
    };
    let slots: Vec<Slot> = requests
        .into_iter()
        .map(|request| resolve(state, request))
        .collect();
    name_trace_span(&slots);
    if let Some(refused) = first_transport_refusal(&slots, call.method) {
        return refused;
    }
    let caller = match crate::auth::caller::authenticate(&state.app, headers).await {
        Ok(caller) => caller,
        Err(e) => return super::credential_refusal(&e),
    };
    let anonymous_queries = if matches!(caller, crate::auth::identity::Caller::Anonymous) {
        slots
            .iter()
            .filter(
                |slot| matches!(slot, Slot::Run { request, .. } if operation::is_query(request)),
            )
            .count()
    } else {
        0
    };
    let pace = match anonymous_pace::pace(&state.app, call.client_ip, anonymous_queries).await {
        Ok(pace) => pace,
        Err(refused) => return refused,
    };
    let context = RequestContext {
        request_id: call.request_id,
        caller,
        client_ip: call.client_ip,
        user_agent: RequestContext::user_agent_of(headers),
    };

    let verbatim = Verbatim::default();
    let mut responses = Vec::with_capacity(slots.len());
    let mut only_persisted_query_misses = true;
    let mut last_cost = None;
    for slot in slots {
        let response = match slot {
            Slot::Run { request, register } => {
                only_persisted_query_misses = false;
                let operation = operation_label(state, &request);
                let wants_cost = request
                    .extensions
                    .get("cost")
                    .is_some_and(|asked| *asked == async_graphql::Value::Boolean(true));
                let cost = CostSlot::default();
                let request = request
                    .data(context.clone())
                    .data(Loaders::default())
                    .data(cost.clone())
                    .data(call.deadline.clone())
                    .data(verbatim.clone());
                let mut response = state.executor.execute(request).await;
                if let Some(spent) = cost.get() {
                    if wants_cost && let Ok(value) = async_graphql::to_value(spent) {
                        response.extensions.insert("cost".into(), value);
                    }
                    last_cost = Some(spent);
                }
                if let Some((hash, query)) = register
                    && response.data != async_graphql::Value::Null
                {
                    state.persisted_queries.insert(hash, &query);
                }
                count_request(operation, &response);
                response
            }
            Slot::Refused(refusal) => {
                only_persisted_query_misses &=
                    matches!(refusal, Refusal::NotFound | Refusal::NotSupported);
                async_graphql::Response::from_errors(vec![coded_error(
                    refusal.message(),
                    refusal.code(),
                )])
            }
        };
        responses.push(response);
    }
    let response = match (single, responses.pop()) {
        (true, Some(response)) => BatchResponse::Single(response),
        (_, last) => {
            responses.extend(last);
            BatchResponse::Batch(responses)
        }
    };
    let mut response = respond(response, call.media, only_persisted_query_misses, &verbatim);
    if let Some(pace) = pace {
        anonymous_pace::report(&mut response, &pace);
    }
    // An invocation's answer reports its call rate (set while it ran); any other the points budget.
    if let Some(spent) = last_cost
        && !response.headers().contains_key("x-ratelimit-limit")
    {
        let reset = (spent.reset_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        rate_headers::insert(response.headers_mut(), spent.limit, spent.remaining, reset);
    }
    response
}

/// Fills in a persisted query's text, or says why it cannot run.
fn resolve(state: &HttpState, mut request: Request) -> Slot {
    match state.persisted_queries.resolve(&mut request) {
        Ok(Outcome::Register(hash)) => {
            let query = request.query.clone();
            Slot::Run {
                request: Box::new(request),
                register: Some((hash, query)),
            }
        }
        Ok(Outcome::Plain | Outcome::Hit) => Slot::Run {
            request: Box::new(request),
            register: None,
        },
        Err(refusal) => Slot::Refused(refusal),
    }
}

/// A request without a query, or an operation other than a query over GET, refuses the whole call.
fn first_transport_refusal(slots: &[Slot], method: Method) -> Option<Response> {
    for slot in slots {
        let Slot::Run { request, .. } = slot else {
            continue;
        };
        if request.query.trim().is_empty() {
            return Some(error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "The request has no query: send {\"query\": \"…\"}.",
            ));
        }
        if method == Method::Get && !operation::is_query(request) {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_USER_INPUT",
                "Only queries may be sent with GET; send mutations and subscriptions with POST.",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Some(response);
        }
    }
    None
}

fn count_request(operation: String, response: &async_graphql::Response) {
    let status = response
        .errors
        .first()
        .and_then(|e| e.extensions.as_ref())
        .and_then(|ext| ext.get("code"))
        .map(|code| code.to_string().trim_matches('"').to_owned())
        .unwrap_or_else(|| "OK".to_owned());
    metrics::counter!("graphql_requests_total", "operation" => operation, "status" => status)
        .increment(1);
}

/// The HTTP response. A request error (nothing executed) is a 400 under the graphql-response+json media
/// type, except a persisted-query miss, which is a 200 that must not be cached, as Apollo clients expect.
/// Parts the resolvers left to `verbatim` are written into the body as they were serialised.
fn respond(
    response: BatchResponse,
    media: ResponseMedia,
    only_persisted_query_misses: bool,
    verbatim: &Verbatim,
) -> Response {
    let request_error = matches!(&response, BatchResponse::Single(r) if !r.errors.is_empty() && r.data == async_graphql::Value::Null);
    let status = if media == ResponseMedia::GraphqlResponseJson
        && request_error
        && !only_persisted_query_misses
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = match serde_json::to_vec(&response) {
        Ok(body) => verbatim.splice(body),
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
    if only_persisted_query_misses {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache, must-revalidate"),
        );
    }
    if let Some(seconds) = retry_after(&response) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    http_response
}

/// The longest `extensions.retryAfter` of the answer's errors: every refusal that says when to come
/// back (`RATE_LIMITED`, `SERVICE_UNAVAILABLE`, an open circuit) says it in `Retry-After` too.
fn retry_after(response: &BatchResponse) -> Option<u64> {
    let responses: &[async_graphql::Response] = match response {
        BatchResponse::Single(single) => std::slice::from_ref(single),
        BatchResponse::Batch(batch) => batch,
    };
    responses
        .iter()
        .flat_map(|r| &r.errors)
        .filter_map(|error| error.extensions.as_ref()?.get("retryAfter"))
        .filter_map(|value| match value {
            async_graphql::Value::Number(n) => n.as_u64(),
            _ => None,
        })
        .max()
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

/// Names the request's trace span after its GraphQL operation, as `query Plans` (semantic conventions
/// for GraphQL), or `GraphQL batch`.
fn name_trace_span(slots: &[Slot]) {
    if !traces::exporting() {
        return;
    }
    let name = match slots {
        [Slot::Run { request, .. }] => operation::span_name(request),
        [_] => "GraphQL Operation".to_owned(),
        _ => "GraphQL batch".to_owned(),
    };
    traces::rename(&tracing::Span::current(), name);
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
