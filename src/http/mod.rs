//! The HTTP surface: routes, the GraphQL handlers, health/readiness/metrics, and the cross-cutting
//! layers (request id, panics, timeout, CORS, compression, body limit).

pub mod anonymous_pace;
pub mod dashboard;
pub mod event_stream;
pub mod graphql;
pub mod health;
pub mod ide;
pub mod middleware;
pub mod operation;
pub mod payment_webhook;
pub mod websocket;
pub mod ws_protocol;

use std::any::Any;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::app::AppState;
use crate::config::CorsOrigins;
use crate::error::INTERNAL_MESSAGE;
use crate::graphql::executor::HubExecutor;
use crate::graphql::persisted_queries::PersistedQueries;

/// What the handlers share: the application state and the executor of the schema built over it. Behind one `Arc`, since
/// every request takes a copy.
#[derive(Clone)]
pub struct HttpState(Arc<Shared>);

pub struct Shared {
    pub app: AppState,
    pub executor: HubExecutor,
    pub persisted_queries: Arc<PersistedQueries>,
}

impl std::ops::Deref for HttpState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Builds the whole router, exactly as production serves it.
pub fn router(app: AppState) -> Router {
    let config = app.config.clone();
    let executor = HubExecutor::new(app.clone());
    let persisted_queries = Arc::new(PersistedQueries::new(
        config.graphql.persisted_queries_bytes,
    ));
    let state = HttpState(Arc::new(Shared {
        app,
        executor,
        persisted_queries,
    }));

    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(websocket::websocket))
        .route("/graphql/stream", axum::routing::post(event_stream::post))
        .route("/playground", get(ide::playground))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route(
            "/webhooks/payments",
            axum::routing::post(payment_webhook::receive),
        )
        .merge(if config.demo_seed {
            crate::dev::demo::router()
        } else {
            Router::new()
        })
        .merge(if config.dashboard {
            dashboard::router()
        } else {
            Router::new()
        })
        .fallback(not_found)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    middleware::TrustedProxies(config.trusted_proxies.clone().into()),
                    middleware::request_context,
                ))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(axum::middleware::from_fn_with_state(
                    middleware::RequestDeadline(config.request_timeout),
                    middleware::request_deadline,
                ))
                .layer(cors_layer(config.cors_origins.as_ref()))
                .layer(CompressionLayer::new())
                .layer(DefaultBodyLimit::disable())
                .layer(RequestBodyLimitLayer::new(config.max_body_bytes)),
        )
}

fn cors_layer(origins: Option<&CorsOrigins>) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600));
    match origins {
        // No origin allowed: browsers may only call from the same origin.
        None => CorsLayer::new(),
        Some(CorsOrigins::Any) => base.allow_origin(AllowOrigin::any()),
        Some(CorsOrigins::List(list)) => base.allow_origin(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    }
}

/// The answer to credentials that do not authenticate (or to an authentication that failed): the
/// error's status and code, with `WWW-Authenticate: Bearer` on a 401.
pub fn credential_refusal(error: &crate::error::AppError) -> Response {
    let mut response = error_response(error.http_status(), error.code(), error.public_message());
    if error.code() == "UNAUTHENTICATED" {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A GraphQL-shaped error body, for failures outside GraphQL execution.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message.into(), "extensions": { "code": code } }]
    });
    (status, Json(body)).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!(
            "There is nothing at {method} {}. The API is at /graphql.",
            uri.path()
        ),
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "a request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        INTERNAL_MESSAGE,
    )
}
