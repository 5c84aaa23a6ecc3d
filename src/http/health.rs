//! `/health` (the process answers), `/ready` (the database answers), `/metrics` (Prometheus).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::HttpState;

/// Liveness: touches no dependency.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 only when the database answers within two seconds.
pub async fn ready(State(state): State<HttpState>) -> Response {
    if crate::db::ping(&state.app.pool, Duration::from_secs(2)).await {
        Json(json!({ "status": "ready", "database": "up" })).into_response()
    } else {
        tracing::warn!("readiness check failed: the database does not answer");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "database": "down" })),
        )
            .into_response()
    }
}

/// Prometheus text format, with the pool's state sampled at scrape time.
pub async fn metrics(State(state): State<HttpState>) -> Response {
    let status = state.app.pool.status();
    let in_use = status.size.saturating_sub(status.available);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set(in_use as f64);
    metrics::gauge!("db_pool_connections", "state" => "idle").set(status.available as f64);
    metrics::gauge!("db_pool_max_connections").set(status.max_size as f64);
    metrics::gauge!("db_pool_waiting_requests").set(status.waiting as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.app.metrics.render(),
    )
        .into_response()
}
