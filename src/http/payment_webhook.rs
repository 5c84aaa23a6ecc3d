//! `POST /webhooks/payments`: the payment provider's events. The signature is checked over the raw
//! body before anything in it is read; a missing or bad signature, or a timestamp outside the
//! tolerance, is answered 400 and changes nothing. A verified event is applied once
//! (`billing::provider_events`) and answered 200, types the hub does not use included, so the provider
//! stops resending it; when the database is unavailable the answer is 503 and the provider sends it
//! again later. Without a provider configured the route answers 404.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{HttpState, error_response};
use crate::billing::payment::Payments;
use crate::billing::provider_events::{self, Outcome};
use crate::error::AppError;

pub async fn receive(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let Payments::Provider(provider) = &state.app.payments else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "No payment provider is configured on this server.",
        );
    };
    let signature = headers
        .get(provider.signature_header())
        .and_then(|value| value.to_str().ok());
    let event = match provider.read_webhook(signature, &body, chrono::Utc::now()) {
        Ok(event) => event,
        Err(refusal) => {
            tracing::warn!(%refusal, "payment webhook refused");
            metrics::counter!("payment_webhooks_total", "outcome" => "refused").increment(1);
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                format!("The webhook was refused: {refusal}."),
            );
        }
    };
    match provider_events::apply(&state.app, &event).await {
        Ok(outcome) => {
            let outcome = match outcome {
                Outcome::Applied => "applied",
                Outcome::Stale => "stale",
                Outcome::Ignored => "ignored",
                Outcome::Duplicate => "duplicate",
            };
            metrics::counter!("payment_webhooks_total", "outcome" => outcome).increment(1);
            (
                StatusCode::OK,
                Json(serde_json::json!({ "received": true, "outcome": outcome })),
            )
                .into_response()
        }
        Err(error) => {
            if let AppError::Internal(cause) = &error {
                tracing::error!(error = ?cause, "payment webhook failed");
            }
            error_response(error.http_status(), error.code(), error.public_message())
        }
    }
}
