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

/// Liveness: whether this process can still do its job, from what it already knows (it touches no
/// dependency). It fails — so an orchestrator restarts the process — when the database has not answered
/// for `HUB_LIVENESS_DB_SECS` or a batch writer has held one batch for `HUB_LIVENESS_BATCH_SECS`.
pub async fn health(State(state): State<HttpState>) -> Response {
    let limits = state.app.config.liveness;
    let vitals = &state.app.vitals;
    let silent = vitals.silent_for();
    let failure = if silent > limits.database_silence {
        Some(format!(
            "the database has not answered for {} s",
            silent.as_secs()
        ))
    } else {
        vitals
            .oldest_batch()
            .filter(|running| *running > limits.batch_running)
            .map(|running| format!("a batch writer has been stuck for {} s", running.as_secs()))
    };
    match failure {
        None => Json(json!({ "status": "ok" })).into_response(),
        Some(reason) => {
            tracing::error!(%reason, "liveness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "failing", "reason": reason })),
            )
                .into_response()
        }
    }
}

/// Readiness: 200 only when the database answers within two seconds.
pub async fn ready(State(state): State<HttpState>) -> Response {
    if crate::db::ping(&state.app.pool, Duration::from_secs(2)).await {
        state.app.vitals.answered();
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
