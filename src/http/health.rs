//! `/health` (the process answers), `/ready` (the database answers), `/metrics` (Prometheus).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use sha2::{Digest, Sha256};

use super::HttpState;
use crate::config::Environment;

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

/// Prometheus text format, with the pool's state sampled at scrape time. With `HUB_METRICS_TOKEN` set a
/// scrape must carry it as a bearer token (401 otherwise); without it, production does not serve
/// `/metrics` at all (404) and development serves it openly.
pub async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let config = &state.app.config;
    match &config.metrics_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            // Compared as digests, so the comparison's time says nothing about the token.
            if Sha256::digest(presented.as_bytes()) != Sha256::digest(token.expose().as_bytes()) {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "send the metrics token as `Authorization: Bearer <HUB_METRICS_TOKEN>`\n",
                )
                    .into_response();
            }
        }
        None if config.environment == Environment::Production => {
            return StatusCode::NOT_FOUND.into_response();
        }
        None => {}
    }
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
