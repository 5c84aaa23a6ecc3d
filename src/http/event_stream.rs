//! `POST /graphql/stream`: GraphQL over Server-Sent Events, the graphql-sse protocol's "distinct
//! connections" mode, so a browser's `fetch` or `curl -N` can follow a subscription without a WebSocket.
//!
//! - The body is one GraphQL request, as for `POST /graphql`; credentials go in the headers and are
//!   checked as for every request (a bad one is a 401 before the stream opens), then again every
//!   [`RECHECK_EVERY`] while it is open: when they no longer hold (token expired, key revoked, account
//!   suspended…) a last `next` carries the refusal and the stream ends.
//! - Every result is a `next` event (`data` is the GraphQL response), then a `complete` event with empty
//!   data; a query or a mutation answers one `next`. Errors that stop an operation before it runs
//!   (syntax, validation, limits, budgets) are a `next` with the errors, as the protocol asks, with
//!   status 200. The client ends a subscription by closing the connection.
//! - Queries spend query points and anonymous queries are paced per address, as over `POST /graphql`. A
//!   comment every 15 s keeps proxies from closing an idle stream.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::{StreamExt, stream};
use async_graphql::{Executor, Request};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::middleware::{ClientAddress, RequestId};
use super::websocket::RECHECK_EVERY;
use super::{HttpState, anonymous_pace, error_response, operation};
use crate::auth::caller;
use crate::auth::identity::Caller;
use crate::error::AppError;
use crate::graphql::context::RequestContext;
use crate::graphql::cost::CostSlot;
use crate::graphql::loaders::Loaders;

/// How often an idle stream carries a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn post(
    State(state): State<HttpState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(ClientAddress(client_ip)): Extension<ClientAddress>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                format!("The request body is not one GraphQL request: {e}."),
            );
        }
    };
    let caller = match caller::authenticate(&state.app, &headers).await {
        Ok(caller) => caller,
        Err(e) => return super::credential_refusal(&e),
    };
    let anonymous_queries =
        usize::from(matches!(caller, Caller::Anonymous) && operation::is_query(&request));
    if let Err(refused) = anonymous_pace::pace(&state.app, client_ip, anonymous_queries).await {
        return refused;
    }
    let context = RequestContext {
        request_id,
        caller,
        client_ip,
        user_agent: RequestContext::user_agent_of(&headers),
    };
    let request = request
        .data(context)
        .data(Loaders::default())
        .data(CostSlot::default());

    let revoked: Arc<std::sync::Mutex<Option<AppError>>> = Arc::default();
    let watcher = {
        let (app, revoked) = (state.app.clone(), Arc::clone(&revoked));
        async move {
            loop {
                tokio::time::sleep(RECHECK_EVERY).await;
                if let Err(refused) = caller::authenticate(&app, &headers).await {
                    if let Ok(mut slot) = revoked.lock() {
                        *slot = Some(refused);
                    }
                    return;
                }
            }
        }
    };
    let results = state
        .executor
        .execute_stream(request, None)
        .take_until(Box::pin(watcher))
        .map(|response| next_event(&response));
    let ending = stream::once(async move {
        let refused = revoked.lock().ok().and_then(|mut slot| slot.take());
        match refused {
            Some(refused) => {
                let error: async_graphql::Error = refused.into();
                let response = async_graphql::Response::from_errors(vec![
                    error.into_server_error(async_graphql::Pos::default()),
                ]);
                vec![next_event(&response)]
            }
            None => vec![Event::default().event("complete").data("")],
        }
    })
    .flat_map(stream::iter);
    let events = results
        .chain(ending)
        .map(Ok::<Event, std::convert::Infallible>);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn next_event(response: &async_graphql::Response) -> Event {
    Event::default()
        .event("next")
        .json_data(response)
        .unwrap_or_else(|_| Event::default().event("next").data("{}"))
}
